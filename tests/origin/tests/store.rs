//! The writable store on the api host: idempotent writes, deliveries,
//! write faults, key decoding, and its control API, over real sockets.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use tierstack_origin::{BASE, Delivery, Fault, Origin, RateLimit};

use support::{Answer, Client, get};

fn put(client: &mut Client, key: &str, id: &str, value: &[u8]) -> Answer {
    let target = format!("/store/{key}");
    client.call("PUT", &target, &[("Idempotency-Key", id)], value)
}

fn delete(client: &mut Client, key: &str, id: &str) -> Answer {
    let target = format!("/store/{key}");
    client.call("DELETE", &target, &[("Idempotency-Key", id)], b"")
}

fn delivery(key: &str, id: &str, value: Option<&[u8]>, seq: u64) -> Delivery {
    Delivery {
        key: key.to_owned(),
        idempotency_key: id.to_owned(),
        value: value.map(<[u8]>::to_vec),
        seq,
    }
}

fn raw_button() -> String {
    format!("/shadcn-ui/ui/main/{BASE}ui/button.tsx")
}

#[test]
fn a_replayed_idempotency_key_answers_204_and_changes_nothing() {
    let origin = Origin::start().unwrap();
    assert_eq!(origin.store_url(), format!("{}/store", origin.api_url()));
    let mut client = Client::connect(&origin.api_url());

    let first = put(&mut client, "k", "w1", b"v1");
    assert_eq!((first.status, first.header("content-length")), (204, None));
    assert!(first.body.is_empty());
    assert_eq!(put(&mut client, "k", "w2", b"v2").status, 204);
    // A late retry of the first write, and the second's key reused for
    // another key: both answered 204, neither applied.
    assert_eq!(put(&mut client, "k", "w1", b"v1").status, 204);
    assert_eq!(put(&mut client, "other", "w2", b"x").status, 204);

    assert_eq!(origin.stored("k"), Some(b"v2".to_vec()));
    assert_eq!(origin.stored("other"), None);
    assert_eq!(
        origin.deliveries(),
        [
            delivery("k", "w1", Some(b"v1"), 0),
            delivery("k", "w2", Some(b"v2"), 1),
        ]
    );
    assert_eq!(origin.write_attempts(), 4);
    assert_eq!(origin.duplicates(), 2);

    let read = client.get("/store/k", &[]);
    assert_eq!(read.status, 200);
    assert_eq!(
        read.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(read.body, b"v2");
    let missing = client.get("/store/other", &[]);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), json!({ "message": "Not Found" }));
    // Reads are not writes, and no store request is in the request log.
    assert_eq!(origin.write_attempts(), 4);
    assert_eq!(origin.count(), 0);
    assert!(origin.requests().is_empty());
}

#[test]
fn injected_write_failures_are_counted_and_not_applied() {
    let origin = Origin::start().unwrap();
    let mut client = Client::connect(&origin.api_url());

    origin.fail_writes(2, 503);
    let failed = put(&mut client, "k", "a", b"1");
    assert_eq!(failed.status, 503);
    assert_eq!(
        failed.json(),
        json!({ "message": "write failure injected by the origin" })
    );
    assert_eq!(put(&mut client, "k", "a", b"1").status, 503);
    assert_eq!(origin.stored("k"), None);
    // The retry of a failed write is its first application.
    assert_eq!(put(&mut client, "k", "a", b"1").status, 204);
    assert_eq!(put(&mut client, "k", "a", b"1").status, 204);
    assert_eq!(origin.write_attempts(), 4);
    assert_eq!(origin.duplicates(), 1);
    assert_eq!(origin.deliveries(), [delivery("k", "a", Some(b"1"), 0)]);

    origin.fail_writes_always(500);
    for _ in 0..3 {
        assert_eq!(delete(&mut client, "k", "b").status, 500);
    }
    // A failure answers in place of the store, even for a duplicate.
    assert_eq!(put(&mut client, "k", "a", b"1").status, 500);
    assert_eq!(origin.stored("k"), Some(b"1".to_vec()));
    origin.clear_write_faults();
    assert_eq!(delete(&mut client, "k", "b").status, 204);
    assert_eq!(origin.stored("k"), None);

    // A new failure replaces the old; zero failures leave none.
    origin.fail_writes(5, 502);
    origin.fail_writes(1, 500);
    assert_eq!(put(&mut client, "k", "c", b"2").status, 500);
    assert_eq!(put(&mut client, "k", "c", b"2").status, 204);
    origin.fail_writes_always(500);
    origin.fail_writes(0, 500);
    assert_eq!(put(&mut client, "k", "d", b"3").status, 204);

    assert_eq!(origin.write_attempts(), 12);
    assert_eq!(origin.duplicates(), 1);
    assert_eq!(
        origin.deliveries(),
        [
            delivery("k", "a", Some(b"1"), 0),
            delivery("k", "b", None, 1),
            delivery("k", "c", Some(b"2"), 2),
            delivery("k", "d", Some(b"3"), 3),
        ]
    );
}

#[test]
fn get_faults_and_write_faults_keep_to_their_own_requests() {
    let origin = Origin::start().unwrap();
    let mut client = Client::connect(&origin.api_url());

    // A fault for every host and path, and a used-up rate limit: the store
    // sees neither.
    origin.fault(Fault {
        status: Some(500),
        ..Fault::default()
    });
    origin.rate_limit(RateLimit {
        limit: 1,
        remaining: 0,
        reset: u64::MAX / 2,
    });
    assert_eq!(put(&mut client, "k", "a", b"v").status, 204);
    assert_eq!(client.get("/store/k", &[]).body, b"v");
    assert_eq!(get(&origin.raw_url(), &raw_button()).status, 500);
    assert_eq!(origin.count(), 1);

    // Write faults touch neither reads of the store nor GitHub's hosts.
    origin.clear_faults();
    origin.reset();
    origin.fail_writes_always(503);
    assert_eq!(put(&mut client, "k", "a", b"v").status, 503);
    assert_eq!(client.get("/store/k", &[]).status, 404);
    assert_eq!(get(&origin.raw_url(), &raw_button()).status, 200);
    let contents = format!("/repos/shadcn-ui/ui/contents/{BASE}ui/button.tsx?ref=main");
    assert_eq!(get(&origin.api_url(), &contents).status, 200);
    assert_eq!(origin.write_attempts(), 1);
    assert_eq!(origin.count(), 2);
}

#[test]
fn keys_are_percent_decoded_and_may_hold_any_character() {
    let origin = Origin::start().unwrap();
    let mut client = Client::connect(&origin.api_url());

    assert_eq!(put(&mut client, "user%3A42", "1", b"a").status, 204);
    assert_eq!(origin.stored("user:42"), Some(b"a".to_vec()));
    assert_eq!(put(&mut client, "user:42", "2", b"b").status, 204);
    assert_eq!(client.get("/store/user%3a42", &[]).body, b"b");
    assert_eq!(
        put(&mut client, "dir/sub%2Ffile%20name", "3", b"c").status,
        204
    );
    assert_eq!(put(&mut client, "100%25%3F", "4", b"d").status, 204);
    assert_eq!(put(&mut client, "caf%C3%A9", "5", b"e").status, 204);
    assert_eq!(origin.stored("dir/sub/file name"), Some(b"c".to_vec()));
    assert_eq!(origin.stored("100%?"), Some(b"d".to_vec()));
    assert_eq!(client.get("/store/caf%C3%A9", &[]).body, b"e");

    let keys: Vec<String> = origin.deliveries().into_iter().map(|d| d.key).collect();
    assert_eq!(
        keys,
        ["user:42", "user:42", "dir/sub/file name", "100%?", "café"]
    );
    assert_eq!(
        origin.deliveries_for("user:42"),
        [
            delivery("user:42", "1", Some(b"a"), 0),
            delivery("user:42", "2", Some(b"b"), 1),
        ]
    );
    assert_eq!(origin.deliveries_for("user%3A42"), []);

    // No key, or one that is not UTF-8: refused, but counted.
    for (key, message) in [
        ("", "no key: use /store/{key}"),
        ("%FF", "the key is not UTF-8 once percent-decoded"),
    ] {
        let refused = put(&mut client, key, "6", b"f");
        assert_eq!(refused.status, 400, "{key:?}");
        assert_eq!(refused.json(), json!({ "message": message }));
    }
    assert_eq!(
        client
            .call("PUT", "/store", &[("Idempotency-Key", "6")], b"f")
            .status,
        400
    );
    assert_eq!(origin.write_attempts(), 8);
    assert_eq!(origin.deliveries().len(), 5);
    // A path that merely starts like the store's is GitHub's.
    assert_eq!(client.get("/storefront", &[]).status, 404);
    assert_eq!(origin.count(), 1);
}

#[test]
fn a_delete_removes_the_value_and_is_a_delivery_even_of_nothing() {
    let origin = Origin::start().unwrap();
    let mut client = Client::connect(&origin.api_url());

    assert_eq!(delete(&mut client, "never", "d0").status, 204);
    assert_eq!(put(&mut client, "k", "p1", b"v").status, 204);
    assert_eq!(delete(&mut client, "k", "d1").status, 204);
    assert_eq!(client.get("/store/k", &[]).status, 404);
    assert_eq!(origin.stored("k"), None);
    // Replays of the delete and of its key on a put change nothing.
    assert_eq!(delete(&mut client, "k", "d1").status, 204);
    assert_eq!(put(&mut client, "k", "d1", b"again").status, 204);
    assert_eq!(origin.stored("k"), None);
    // An empty value is a value.
    assert_eq!(put(&mut client, "k", "p2", b"").status, 204);
    assert_eq!(origin.stored("k"), Some(Vec::new()));
    let read = client.get("/store/k", &[]);
    assert_eq!((read.status, read.body.len()), (200, 0));

    assert_eq!(
        origin.deliveries(),
        [
            delivery("never", "d0", None, 0),
            delivery("k", "p1", Some(b"v"), 1),
            delivery("k", "d1", None, 2),
            delivery("k", "p2", Some(b""), 3),
        ]
    );
    assert_eq!((origin.write_attempts(), origin.duplicates()), (6, 2));
}

#[test]
fn a_write_without_an_idempotency_key_is_refused_and_counted() {
    let origin = Origin::start().unwrap();
    let mut client = Client::connect(&origin.api_url());
    let refused = client.call("PUT", "/store/k", &[], b"v");
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.json(),
        json!({ "message": "a write needs an Idempotency-Key header" })
    );
    let empty = client.call("PUT", "/store/k", &[("Idempotency-Key", "")], b"v");
    assert_eq!(empty.status, 400);
    assert_eq!(client.call("DELETE", "/store/k", &[], b"").status, 400);
    // Any case of the header name will do.
    let lower = client.call("PUT", "/store/k", &[("idempotency-key", "a")], b"v");
    assert_eq!(lower.status, 204);
    assert_eq!(origin.write_attempts(), 4);
    assert_eq!(origin.deliveries(), [delivery("k", "a", Some(b"v"), 0)]);

    // Other methods are not writes.
    let post = client.call("POST", "/store/k", &[("Idempotency-Key", "b")], b"v");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, PUT, DELETE"));
    assert_eq!(origin.write_attempts(), 4);
}

#[test]
fn the_write_delay_holds_a_write_before_it_is_applied() {
    let origin = Origin::start().unwrap();
    origin.write_delay(Duration::from_millis(300));
    let mut client = Client::connect(&origin.api_url());
    let started = Instant::now();
    client.send("PUT", "/store/k", &[("Idempotency-Key", "a")], b"v");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(origin.write_attempts(), 1);
    assert!(origin.deliveries().is_empty());
    assert_eq!(origin.stored("k"), None);
    assert_eq!(client.answer().unwrap().status, 204);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(origin.deliveries(), [delivery("k", "a", Some(b"v"), 0)]);

    // Failures wait out the delay too.
    origin.fail_writes(1, 500);
    let started = Instant::now();
    assert_eq!(put(&mut client, "k", "b", b"w").status, 500);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a_write_waiting_out_its_delay_when_the_origin_is_reset_is_not_applied() {
    let origin = Origin::start().unwrap();
    origin.write_delay(Duration::from_millis(300));
    let mut client = Client::connect(&origin.api_url());
    client.send("PUT", "/store/k", &[("Idempotency-Key", "a")], b"old");
    std::thread::sleep(Duration::from_millis(100));
    origin.reset();
    let stale = client.answer().unwrap();
    assert_eq!(stale.status, 503);
    assert_eq!(
        stale.json(),
        json!({ "message": "the origin was reset while this write waited" })
    );
    assert!(origin.deliveries().is_empty());
    assert_eq!((origin.write_attempts(), origin.duplicates()), (0, 0));
    assert_eq!(origin.stored("k"), None);
}

#[test]
fn reset_empties_the_store_its_log_and_counters_and_clears_write_faults() {
    let origin = Origin::start().unwrap();
    let mut client = Client::connect(&origin.api_url());
    assert_eq!(put(&mut client, "k", "a", b"v").status, 204);
    assert_eq!(put(&mut client, "k", "a", b"v").status, 204);
    origin.fail_writes_always(500);
    origin.reset();
    assert_eq!(origin.stored("k"), None);
    assert!(origin.deliveries().is_empty());
    assert_eq!((origin.write_attempts(), origin.duplicates()), (0, 0));
    // The idempotency key is forgotten too: the same write applies again.
    assert_eq!(put(&mut client, "k", "a", b"w").status, 204);
    assert_eq!(origin.deliveries(), [delivery("k", "a", Some(b"w"), 0)]);
}

#[test]
fn control_over_http_round_trips_deliveries_and_write_faults() {
    let origin = Origin::start().unwrap();
    let mut client = Client::connect(&origin.api_url());
    let ok = json!({ "ok": true });

    assert_eq!(put(&mut client, "k%3A1", "w1", b"text").status, 204);
    assert_eq!(put(&mut client, "bin", "w2", &[0xff, 0x00]).status, 204);
    assert_eq!(delete(&mut client, "k:1", "w3").status, 204);
    assert_eq!(put(&mut client, "k:1", "w1", b"text").status, 204);
    let listed = client.get("/_origin/deliveries", &[]);
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.json(),
        json!({
            "count": 3,
            "attempts": 4,
            "duplicates": 1,
            "deliveries": [
                { "key": "k:1", "idempotency_key": "w1", "value": "text",
                  "value_base64": "dGV4dA==", "seq": 0 },
                { "key": "bin", "idempotency_key": "w2", "value": null,
                  "value_base64": "/wA=", "seq": 1 },
                { "key": "k:1", "idempotency_key": "w3", "value": null,
                  "value_base64": null, "seq": 2 },
            ],
        })
    );

    let answer = client.post(
        "/_origin/fail_writes",
        &json!({ "count": 2, "status": 500 }),
    );
    assert_eq!((answer.status, answer.json()), (200, ok.clone()));
    let statuses: Vec<u16> = (0..3)
        .map(|_| put(&mut client, "f", "w4", b"1").status)
        .collect();
    assert_eq!(statuses, [500, 500, 204]);
    for always in [
        json!({ "status": 503 }),
        json!({ "count": null, "status": 503 }),
    ] {
        assert_eq!(client.post("/_origin/fail_writes", &always).json(), ok);
        let statuses: Vec<u16> = (0..3)
            .map(|_| put(&mut client, "f", "w5", b"2").status)
            .collect();
        assert_eq!(statuses, [503, 503, 503]);
    }
    assert_eq!(
        client
            .post("/_origin/clear_write_faults", &json!({}))
            .json(),
        ok
    );
    assert_eq!(put(&mut client, "f", "w5", b"2").status, 204);

    assert_eq!(
        client
            .post("/_origin/write_delay", &json!({ "ms": 200 }))
            .json(),
        ok
    );
    let started = Instant::now();
    assert_eq!(put(&mut client, "f", "w6", b"3").status, 204);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        client
            .post("/_origin/write_delay", &json!({ "ms": 0 }))
            .json(),
        ok
    );

    let counts = client.get("/_origin/deliveries", &[]).json();
    assert_eq!(
        (&counts["count"], &counts["attempts"], &counts["duplicates"]),
        (&json!(6), &json!(15), &json!(1))
    );
    assert_eq!(origin.write_attempts(), 15);

    for bad in [
        json!({ "count": 1 }),
        json!({ "status": 199 }),
        json!({ "status": 600 }),
        json!({ "cont": 1, "status": 500 }),
        json!({ "count": -1, "status": 500 }),
    ] {
        let refused = client.post("/_origin/fail_writes", &bad);
        assert_eq!(refused.status, 400, "{bad}");
        assert_eq!(refused.json()["ok"], false);
    }
    assert_eq!(
        client
            .post("/_origin/write_delay", &json!({ "ms": -1 }))
            .status,
        400
    );
    assert_eq!(client.post("/_origin/write_delay", &json!({})).status, 400);
    assert_eq!(client.get("/_origin/fail_writes", &[]).status, 405);
    assert_eq!(client.post("/_origin/deliveries", &json!({})).status, 405);
    // A refused control request changed nothing.
    assert_eq!(put(&mut client, "f", "w7", b"4").status, 204);

    assert_eq!(client.post("/_origin/reset", &json!({})).json(), ok);
    assert_eq!(
        client.get("/_origin/deliveries", &[]).json(),
        json!({ "count": 0, "attempts": 0, "duplicates": 0, "deliveries": [] })
    );
    assert_eq!(client.get("/store/f", &[]).status, 404);
    assert_eq!(origin.count(), 0);
}
