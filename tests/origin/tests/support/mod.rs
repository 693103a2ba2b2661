//! A hand-written HTTP/1.1 client for the tests of the origin: it sends
//! exactly the bytes asked for and reads answers off the wire as they come.

#![allow(dead_code)] // each test binary uses a part of this module

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// One response as read off the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A persistent connection to one host.
pub struct Client {
    pub reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(url: &str) -> Client {
        let stream = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    pub fn send(&mut self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut out = format!("{method} {target} HTTP/1.1\r\nHost: origin\r\n");
        for (name, value) in headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() {
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        out.push_str("\r\n");
        let stream = self.reader.get_mut();
        stream.write_all(out.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
    }

    /// The status line and headers; `None` if the server closed first.
    pub fn head(&mut self) -> Option<(u16, Vec<(String, String)>)> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).unwrap() == 0 {
            return None;
        }
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                return Some((status, headers));
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
    }

    pub fn answer(&mut self) -> Option<Answer> {
        let (status, headers) = self.head()?;
        let mut answer = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        let length = answer
            .header("content-length")
            .map_or(0, |v| v.parse().unwrap());
        answer.body = vec![0; length];
        self.reader.read_exact(&mut answer.body).unwrap();
        Some(answer)
    }

    /// Sends one request and reads its answer.
    pub fn call(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        self.send(method, target, headers, body);
        self.answer().expect("an answer")
    }

    pub fn get(&mut self, target: &str, headers: &[(&str, &str)]) -> Answer {
        self.send("GET", target, headers, b"");
        self.answer().expect("an answer")
    }

    pub fn post(&mut self, target: &str, body: &Value) -> Answer {
        self.send("POST", target, &[], body.to_string().as_bytes());
        self.answer().expect("an answer")
    }
}

pub fn get(url: &str, target: &str) -> Answer {
    Client::connect(url).get(target, &[])
}
