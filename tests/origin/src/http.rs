//! Hand-written HTTP/1.1: reading requests (with `Content-Length` or
//! chunked bodies) and writing responses byte by byte, so that faults such
//! as a short body or a silent close are exactly what goes on the wire.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// The most header bytes a request may carry.
const MAX_HEAD: usize = 64 * 1024;
/// The largest request body accepted (control bodies are small).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One parsed request.
#[derive(Debug)]
pub(crate) struct HttpRequest {
    pub(crate) method: String,
    /// The path, as sent, without the query.
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    /// `HTTP/1.0` rather than `HTTP/1.1`.
    http10: bool,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpRequest {
    /// A header's value; names compare without regard to case.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open afterwards.
    pub(crate) fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.header("connection")
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        if self.http10 {
            has("keep-alive")
        } else {
            !has("close")
        }
    }
}

/// Why a request could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection failed or ended mid-request.
    Closed,
    /// The bytes are not an HTTP/1.x request; answer 400 and close.
    Malformed(&'static str),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> ReadError {
        ReadError::Closed
    }
}

/// Reads one line ending in `\n`, without its line ending, counting it
/// against `budget`.
async fn read_line<R: AsyncRead + Unpin>(
    conn: &mut BufReader<R>,
    budget: &mut usize,
) -> Result<Option<String>, ReadError> {
    let mut line = Vec::new();
    let n = (&mut *conn)
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(ReadError::Malformed("request head too large"));
    }
    *budget -= n;
    if line.last() != Some(&b'\n') {
        return Err(ReadError::Closed);
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// Reads the next request; `None` when the client closed the connection
/// between requests.
pub(crate) async fn read_request<R: AsyncRead + Unpin>(
    conn: &mut BufReader<R>,
) -> Result<Option<HttpRequest>, ReadError> {
    let mut budget = MAX_HEAD;
    // Tolerate blank lines before a request (RFC 9112 §2.2).
    let start = loop {
        match read_line(conn, &mut budget).await? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
    let mut parts = start.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed("bad request line"));
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReadError::Malformed("unsupported HTTP version")),
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.to_owned(), None),
    };

    let mut headers = Vec::new();
    loop {
        let Some(line) = read_line(conn, &mut budget).await? else {
            return Err(ReadError::Closed);
        };
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed("bad header line"));
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }

    let mut request = HttpRequest {
        method: method.to_owned(),
        path,
        query,
        http10,
        headers,
        body: Vec::new(),
    };
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        request.body = read_chunked(conn).await?;
    } else if let Some(length) = request.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| ReadError::Malformed("bad Content-Length"))?;
        if length > MAX_BODY {
            return Err(ReadError::Malformed("request body too large"));
        }
        let mut body = vec![0; length];
        conn.read_exact(&mut body).await?;
        request.body = body;
    }
    Ok(Some(request))
}

/// Reads a chunked body and its trailers.
async fn read_chunked<R: AsyncRead + Unpin>(conn: &mut BufReader<R>) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD;
    loop {
        let Some(line) = read_line(conn, &mut budget).await? else {
            return Err(ReadError::Closed);
        };
        let size = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size, 16).map_err(|_| ReadError::Malformed("bad chunk size"))?;
        if size == 0 {
            break;
        }
        if body.len() + size > MAX_BODY {
            return Err(ReadError::Malformed("request body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..]).await?;
        let mut crlf = [0; 2];
        conn.read_exact(&mut crlf).await?;
    }
    // Trailers, up to the blank line.
    while let Some(line) = read_line(conn, &mut budget).await? {
        if line.is_empty() {
            break;
        }
    }
    Ok(body)
}

/// A response body.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// These bytes.
    Bytes(Vec<u8>),
    /// This many filler bytes, written in pieces.
    Filler(u64),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::Filler(n) => *n,
        }
    }
}

/// A response to write.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Body,
    /// Write half the body, then close.
    pub(crate) truncate: bool,
}

impl Response {
    pub(crate) fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
            body: Body::Bytes(body.into()),
            truncate: false,
        }
    }

    pub(crate) fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::new(status, "application/json; charset=utf-8", value.to_string())
    }

    /// A response with no body and no `Content-Type` (a 204, 304 or 302).
    pub(crate) fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
            truncate: false,
        }
    }

    /// Sets a header, replacing one of the same name in any case.
    pub(crate) fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.into()));
    }
}

/// Writes a response; `Ok(true)` if the connection may carry another
/// request.
pub(crate) async fn write_response<W: AsyncWrite + Unpin>(
    conn: &mut W,
    response: &Response,
    keep_alive: bool,
) -> io::Result<bool> {
    let keep_alive = keep_alive && !response.truncate;
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    head.push_str("Server: tierstack-origin\r\n");
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    // Neither a 204 nor a 304 has a body (RFC 9110 §6.4.1); a 204 has no
    // Content-Length either, and a 304's would describe the 200's.
    let bodiless = matches!(response.status, 204 | 304);
    if !bodiless {
        head.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let send = if bodiless {
        0
    } else if response.truncate {
        response.body.len() / 2
    } else {
        response.body.len()
    };
    match &response.body {
        Body::Bytes(bytes) => {
            let mut out = head.into_bytes();
            // `send` never exceeds the body's length.
            out.extend_from_slice(&bytes[..send as usize]);
            conn.write_all(&out).await?;
        }
        Body::Filler(_) => {
            conn.write_all(head.as_bytes()).await?;
            let piece = [b'x'; 64 * 1024];
            let mut left = send;
            while left > 0 {
                let n = left.min(piece.len() as u64) as usize;
                conn.write_all(&piece[..n]).await?;
                left -= n as u64;
            }
        }
    }
    conn.flush().await?;
    Ok(keep_alive)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Vec<HttpRequest> {
        let mut conn = BufReader::new(bytes);
        let mut out = Vec::new();
        while let Some(request) = read_request(&mut conn).await.unwrap() {
            out.push(request);
        }
        out
    }

    #[tokio::test(flavor = "current_thread")]
    async fn parses_pipelined_requests_with_bodies_and_any_header_case() {
        let wire = b"GET /a?ref=main HTTP/1.1\r\nIF-NONE-MATCH: \"x\"\r\n\r\n\
            POST /b HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc\
            POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhe\r\n3;x=y\r\nllo\r\n0\r\n\r\n";
        let requests = parse(wire).await;
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[0].path, "/a");
        assert_eq!(requests[0].query.as_deref(), Some("ref=main"));
        assert_eq!(requests[0].header("if-none-match"), Some("\"x\""));
        assert!(requests[0].keep_alive());
        assert_eq!(requests[1].body, b"abc");
        assert_eq!(requests[2].body, b"hello");
        assert!(!requests[2].keep_alive());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn truncation_sends_the_full_length_and_half_the_body() {
        let mut response = Response::new(200, "text/plain", "abcdef");
        response.truncate = true;
        let mut out = Vec::new();
        assert!(!write_response(&mut out, &response, true).await.unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Length: 6\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nabc"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_content_sends_neither_a_length_nor_a_body() {
        let response = Response::new(204, "text/plain", "ignored");
        let mut out = Vec::new();
        assert!(write_response(&mut out, &response, true).await.unwrap());
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 204 No Content\r\nServer: tierstack-origin\r\n\
             Content-Type: text/plain\r\nConnection: keep-alive\r\n\r\n"
        );
    }
}
