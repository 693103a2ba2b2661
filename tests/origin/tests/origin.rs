//! The origin over real sockets, with a hand-written HTTP/1.1 client.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tierstack_origin::{BASE, COMPONENTS, Fault, Host, Origin, RateLimit, seed_content};

use support::{Client, get};

fn raw_path(component: &str) -> String {
    format!("/shadcn-ui/ui/main/{BASE}ui/{component}.tsx")
}

fn api_path(path: &str) -> String {
    format!("/repos/shadcn-ui/ui/contents/{path}?ref=main")
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::new();
    for quad in clean.chunks(4) {
        let digits: Vec<u8> = quad
            .iter()
            .filter(|&&c| c != b'=')
            .map(|&c| value(c))
            .collect();
        let n = digits
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | (u32::from(d) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..digits.len()]);
    }
    out
}

#[test]
fn raw_serves_a_file_with_an_etag_and_304s_a_match() {
    let origin = Origin::start().unwrap();
    let mut client = Client::connect(&origin.raw_url());
    let answer = client.get(&raw_path("button"), &[]);
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let path = format!("{BASE}ui/button.tsx");
    assert_eq!(answer.text(), seed_content(&path));
    assert_eq!(answer.text().lines().next().unwrap(), format!("// {path}"));
    let etag = answer.header("etag").unwrap().to_owned();
    assert_eq!(etag.len(), 18);

    // Keep-alive: the same connection answers again, here a 304.
    let answer = client.get(&raw_path("button"), &[("iF-nOnE-mAtCh", &etag)]);
    assert_eq!(answer.status, 304);
    assert!(answer.body.is_empty());
    assert_eq!(answer.header("etag"), Some(etag.as_str()));

    let answer = client.get(&raw_path("no-such-thing"), &[]);
    assert_eq!((answer.status, answer.text()), (404, "404: Not Found"));

    // The other host serves the same files.
    let answer = get(&origin.other_url(), &raw_path("button"));
    assert_eq!(
        (answer.status, answer.header("etag")),
        (200, Some(etag.as_str()))
    );
    assert_eq!(origin.count(), 4);
}

#[test]
fn api_lists_directories_and_serves_files_as_base64() {
    let origin = Origin::start().unwrap();
    let mut client = Client::connect(&origin.api_url());

    let answer = client.get(&api_path(&format!("{BASE}ui")), &[]);
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(answer.header("etag").is_some());
    let listing = answer.json();
    let listing = listing.as_array().unwrap();
    let mut names: Vec<String> = COMPONENTS.iter().map(|c| format!("{c}.tsx")).collect();
    names.sort();
    let got: Vec<&str> = listing
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, names);
    let button = listing.iter().find(|e| e["name"] == "button.tsx").unwrap();
    let path = format!("{BASE}ui/button.tsx");
    assert_eq!(button["path"], path.as_str());
    assert_eq!(button["type"], "file");
    assert_eq!(button["size"], seed_content(&path).len());
    assert_eq!(button["sha"].as_str().unwrap().len(), 40);
    assert_eq!(
        button["download_url"],
        format!("{}/shadcn-ui/ui/main/{path}", origin.raw_url()).as_str()
    );

    let answer = client.get(&api_path(BASE.trim_end_matches('/')), &[]);
    let types: Vec<(String, String)> = answer
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    let dir = |n: &str| (n.to_owned(), "dir".to_owned());
    assert_eq!(types, [dir("blocks"), dir("examples"), dir("ui")]);

    let answer = client.get(&api_path(&path), &[]);
    assert_eq!(answer.status, 200);
    let object = answer.json();
    assert_eq!(object["type"], "file");
    assert_eq!(object["encoding"], "base64");
    assert_eq!(object["name"], "button.tsx");
    let content = object["content"].as_str().unwrap();
    assert_eq!(base64_decode(content), seed_content(&path).into_bytes());
    let etag = answer.header("etag").unwrap().to_owned();
    let raw_etag = get(&origin.raw_url(), &raw_path("button"));
    assert_eq!(raw_etag.header("etag"), Some(etag.as_str()));

    let answer = client.get(&api_path(&path), &[("If-None-Match", &etag)]);
    assert_eq!(answer.status, 304);

    let answer = client.get(&api_path("apps/nothing"), &[]);
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json(), json!({ "message": "Not Found" }));
    let answer = client.get(&format!("/repos/shadcn-ui/ui/contents/{BASE}?ref=dev"), &[]);
    assert_eq!(answer.status, 404);
}

#[test]
fn connection_close_is_honoured() {
    let origin = Origin::start().unwrap();
    let mut client = Client::connect(&origin.raw_url());
    let answer = client.get(&raw_path("card"), &[("Connection", "close")]);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    let mut rest = Vec::new();
    client.reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn fault_status_and_headers_apply_the_given_number_of_times() {
    let origin = Origin::start().unwrap();
    origin.fault(Fault {
        host: Some(Host::Raw),
        path_contains: Some("button".into()),
        times: Some(2),
        status: Some(429),
        headers: vec![("Retry-After".into(), "1".into())],
        body: Some("slow down".into()),
        ..Fault::default()
    });
    let mut client = Client::connect(&origin.raw_url());
    for _ in 0..2 {
        let answer = client.get(&raw_path("button"), &[]);
        assert_eq!(answer.status, 429);
        assert_eq!(answer.header("retry-after"), Some("1"));
        assert_eq!(answer.text(), "slow down");
    }
    assert_eq!(client.get(&raw_path("card"), &[]).status, 200);
    assert_eq!(client.get(&raw_path("button"), &[]).status, 200);
    assert_eq!(get(&origin.other_url(), &raw_path("button")).status, 200);
    let statuses: Vec<u16> = origin.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200, 200, 200]);
}

#[test]
fn fault_delay_holds_the_answer_but_logs_at_once() {
    let origin = Origin::start().unwrap();
    origin.fault(Fault {
        delay_ms: 300,
        times: Some(1),
        ..Fault::default()
    });
    let mut client = Client::connect(&origin.raw_url());
    let started = Instant::now();
    client.send("GET", &raw_path("button"), &[], b"");
    std::thread::sleep(Duration::from_millis(100));
    let logged = origin.requests();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].status, 0);
    let answer = client.answer().unwrap();
    assert_eq!(answer.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(origin.requests()[0].status, 200);
}

#[test]
fn fault_truncate_sends_fewer_bytes_than_promised_then_closes() {
    let origin = Origin::start().unwrap();
    origin.fault(Fault {
        truncate: true,
        ..Fault::default()
    });
    let mut client = Client::connect(&origin.raw_url());
    client.send("GET", &raw_path("button"), &[], b"");
    let (status, headers) = client.head().unwrap();
    assert_eq!(status, 200);
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .unwrap()
        .1
        .parse()
        .unwrap();
    let mut body = Vec::new();
    client.reader.read_to_end(&mut body).unwrap();
    assert_eq!(length, seed_content(&format!("{BASE}ui/button.tsx")).len());
    assert_eq!(body.len(), length / 2);
}

#[test]
fn fault_oversize_sends_a_large_body_without_etag() {
    let origin = Origin::start().unwrap();
    origin.fault(Fault {
        oversize: Some(3_000_000),
        times: Some(1),
        ..Fault::default()
    });
    let answer = get(&origin.raw_url(), &raw_path("button"));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.len(), 3_000_000);
    assert_eq!(answer.header("etag"), None);
}

#[test]
fn fault_redirect_points_at_the_other_host_with_path_and_query() {
    let origin = Origin::start().unwrap();
    origin.fault(Fault {
        host: Some(Host::Raw),
        redirect: Some(origin.other_url()),
        ..Fault::default()
    });
    let target = format!("{}?token=abc", raw_path("button"));
    let answer = get(&origin.raw_url(), &target);
    assert_eq!(answer.status, 302);
    let location = answer.header("location").unwrap();
    assert_eq!(location, format!("{}{target}", origin.other_url()));
    let followed = get(
        &origin.other_url(),
        location.trim_start_matches(&origin.other_url()),
    );
    assert_eq!(followed.status, 200);
    let hosts: Vec<Host> = origin.requests().iter().map(|r| r.host).collect();
    assert_eq!(hosts, [Host::Raw, Host::Other]);
}

#[test]
fn fault_close_hangs_up_without_an_answer() {
    let origin = Origin::start().unwrap();
    origin.fault(Fault {
        close: true,
        times: Some(1),
        ..Fault::default()
    });
    let mut client = Client::connect(&origin.raw_url());
    client.send("GET", &raw_path("button"), &[], b"");
    assert!(client.head().is_none());
    assert_eq!(origin.requests()[0].status, 0);
    assert_eq!(get(&origin.raw_url(), &raw_path("button")).status, 200);
}

#[test]
fn rate_limit_counts_down_refuses_and_recovers_after_reset() {
    let origin = Origin::start().unwrap();
    let reset = epoch_now() + 2;
    origin.rate_limit(RateLimit {
        limit: 3,
        remaining: 2,
        reset,
    });
    let mut client = Client::connect(&origin.api_url());
    let path = api_path(&format!("{BASE}ui/button.tsx"));
    let first = client.get(&path, &[]);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(first.header("x-ratelimit-used"), Some("2"));
    assert_eq!(
        first.header("x-ratelimit-reset"),
        Some(reset.to_string().as_str())
    );

    // A 304 is free.
    let etag = first.header("etag").unwrap().to_owned();
    let cached = client.get(&path, &[("If-None-Match", &etag)]);
    assert_eq!(cached.status, 304);
    assert_eq!(cached.header("x-ratelimit-remaining"), Some("1"));

    // A 404 is not.
    let missing = client.get(&api_path("nothing"), &[]);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-ratelimit-remaining"), Some("0"));

    let refused = client.get(&path, &[]);
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        refused.header("x-ratelimit-reset"),
        Some(reset.to_string().as_str())
    );
    assert_eq!(
        refused.json(),
        json!({ "message": "API rate limit exceeded for 127.0.0.1." })
    );
    // Raw is not rate limited.
    assert_eq!(get(&origin.raw_url(), &raw_path("button")).status, 200);

    while epoch_now() < reset {
        std::thread::sleep(Duration::from_millis(50));
    }
    let recovered = client.get(&path, &[]);
    assert_eq!(recovered.status, 200);
    assert_eq!(recovered.header("x-ratelimit-remaining"), Some("2"));
    let new_reset: u64 = recovered
        .header("x-ratelimit-reset")
        .unwrap()
        .parse()
        .unwrap();
    assert!(new_reset >= reset + 3600);
}

#[test]
fn the_log_records_method_path_query_and_credentials() {
    let origin = Origin::start().unwrap();
    let mut client = Client::connect(&origin.api_url());
    let path = format!("/repos/shadcn-ui/ui/contents/{BASE}ui");
    client.get(
        &format!("{path}?ref=main"),
        &[
            ("authorization", "Bearer t0ken"),
            ("If-None-Match", "\"nope\""),
        ],
    );
    client.get(&format!("{BASE}x"), &[]);
    let requests = origin.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first.host, Host::Api);
    assert_eq!(first.method, "GET");
    assert_eq!(first.path, path);
    assert_eq!(first.query.as_deref(), Some("ref=main"));
    assert_eq!(first.authorization.as_deref(), Some("Bearer t0ken"));
    assert_eq!(first.if_none_match.as_deref(), Some("\"nope\""));
    assert_eq!(first.status, 200);
    assert_eq!(requests[1].authorization, None);
    assert_eq!(origin.count_matching("/ui"), 1);
    origin.clear_log();
    assert_eq!(origin.count(), 0);
}

#[test]
fn files_can_be_set_and_removed() {
    let origin = Origin::start().unwrap();
    origin.set_file("acme", "kit", "v1", "src/a.txt", b"hello");
    let answer = get(&origin.raw_url(), "/acme/kit/v1/src/a.txt");
    assert_eq!((answer.status, answer.text()), (200, "hello"));
    let listing = get(&origin.api_url(), "/repos/acme/kit/contents/src?ref=v1").json();
    assert_eq!(listing[0]["name"], "a.txt");
    origin.remove_file("acme", "kit", "v1", "src/a.txt");
    assert_eq!(get(&origin.raw_url(), "/acme/kit/v1/src/a.txt").status, 404);
    assert_eq!(
        get(&origin.api_url(), "/repos/acme/kit/contents/src?ref=v1").status,
        404
    );

    origin.remove_file("shadcn-ui", "ui", "main", &format!("{BASE}ui/button.tsx"));
    origin.fault(Fault::default());
    origin.reset();
    assert_eq!(origin.count(), 0);
    assert_eq!(get(&origin.raw_url(), &raw_path("button")).status, 200);
}

#[test]
fn control_over_http_drives_faults_files_limits_and_the_log() {
    let origin = Origin::start().unwrap();
    let mut control = Client::connect(&origin.api_url());
    let ok = json!({ "ok": true });

    let answer = control.post(
        "/_origin/fault",
        &json!({ "host": "raw", "times": 1, "status": 503, "headers": [["Retry-After", "2"]] }),
    );
    assert_eq!((answer.status, answer.json()), (200, ok.clone()));
    let faulted = get(&origin.raw_url(), &raw_path("card"));
    assert_eq!(
        (faulted.status, faulted.header("retry-after")),
        (503, Some("2"))
    );

    let file =
        json!({ "owner": "o", "repo": "r", "ref": "main", "path": "a/b.txt", "content": "hi" });
    assert_eq!(control.post("/_origin/file", &file).json(), ok);
    assert_eq!(get(&origin.raw_url(), "/o/r/main/a/b.txt").text(), "hi");
    let gone = json!({ "owner": "o", "repo": "r", "ref": "main", "path": "a/b.txt" });
    assert_eq!(control.post("/_origin/remove_file", &gone).json(), ok);
    assert_eq!(get(&origin.raw_url(), "/o/r/main/a/b.txt").status, 404);

    let limit = json!({ "limit": 10, "remaining": 0, "reset": epoch_now() + 600 });
    assert_eq!(control.post("/_origin/rate_limit", &limit).json(), ok);
    assert_eq!(get(&origin.api_url(), &api_path(BASE)).status, 403);
    // Control paths are never rate limited, faulted or logged.
    assert_eq!(
        control
            .post("/_origin/fault", &json!({ "close": true }))
            .json(),
        ok
    );
    let log = control.get("/_origin/requests", &[]).json();
    assert_eq!(log["count"], 4);
    assert_eq!(log["requests"][0]["host"], "raw");
    assert_eq!(log["requests"][0]["status"], 503);
    assert_eq!(log["requests"][3]["status"], 403);
    assert_eq!(control.post("/_origin/clear_faults", &json!({})).json(), ok);
    assert_eq!(control.post("/_origin/clear_log", &json!({})).json(), ok);
    assert_eq!(control.get("/_origin/requests", &[]).json()["count"], 0);

    let bad = control.post("/_origin/fault", &json!({ "status": "teapot" }));
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("bad body")
    );
    control.send("POST", "/_origin/rate_limit", &[], b"{not json");
    assert_eq!(control.answer().unwrap().status, 400);

    assert_eq!(control.post("/_origin/reset", &json!({})).json(), ok);
    let after = get(&origin.api_url(), &api_path(BASE));
    assert_eq!(after.status, 200);
    assert_eq!(after.header("x-ratelimit-remaining"), Some("4999"));
}

#[test]
fn the_binary_prints_its_urls_and_ends_with_stdin() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tierstack-origin"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let urls: Value = serde_json::from_str(&line).unwrap();
    let raw = urls["raw"].as_str().unwrap();
    assert!(
        urls["api"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert!(
        urls["other"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.")
    );
    assert_eq!(get(raw, &raw_path("button")).status, 200);
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success());
}
