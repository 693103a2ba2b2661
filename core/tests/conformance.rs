//! The Rust runner of the shared conformance vectors in
//! `tests/conformance/vectors` (the format is in that folder's README).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tierstack::blocking::Cache;
use tierstack::config::ttl_from_seconds;
use tierstack::{Config, Error, ErrorKind, Fetched, GetOptions, Loaded, SetOptions};

/// The scripted loader of a vector: its answers, used in order by every
/// loader call, and what the calls were.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Value>>,
    calls: AtomicUsize,
    /// The keys handed to the last batch loader call.
    batch_keys: Mutex<Option<Vec<String>>>,
    /// The source's writes: `[key, value]`, `value` null for a remove.
    writes: Mutex<Vec<Value>>,
    /// Source writes still to refuse (`store_fail`).
    store_fail: AtomicUsize,
}

impl Script {
    fn new(vector: &Value) -> Arc<Self> {
        let answers = vector
            .get("script")
            .and_then(Value::as_array)
            .map(|a| a.iter().cloned().collect())
            .unwrap_or_default();
        let store_fail = vector
            .get("store_fail")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Arc::new(Self {
            answers: Mutex::new(answers),
            store_fail: AtomicUsize::new(store_fail as usize),
            ..Self::default()
        })
    }

    /// A source write: refused while `store_fail` lasts, else recorded.
    fn write(&self, key: &str, value: Option<&[u8]>) -> tierstack::Result<()> {
        let refused = self
            .store_fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return Err(Error::new(ErrorKind::Source, "store refused"));
        }
        let value = value.map(|v| String::from_utf8(v.to_vec()).expect("UTF-8 values"));
        self.writes.lock().unwrap().push(json!([key, value]));
        Ok(())
    }

    /// The next answer, after its delay.
    fn next(&self) -> tierstack::Result<Value> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self.answers.lock().unwrap().pop_front();
        let answer = answer.ok_or_else(|| Error::new(ErrorKind::Source, "script exhausted"))?;
        if let Some(delay) = answer.get("delay").and_then(Value::as_f64) {
            std::thread::sleep(Duration::from_secs_f64(delay));
        }
        if let Some(message) = answer.get("error").and_then(Value::as_str) {
            return Err(Error::new(ErrorKind::Source, message));
        }
        Ok(answer)
    }

    fn load(&self) -> tierstack::Result<Fetched> {
        let answer = self.next()?;
        if answer.get("not_found") == Some(&Value::Bool(true)) {
            return Ok(Fetched::NotFound);
        }
        let value = answer["value"].as_str().expect("a value answer");
        let mut loaded = Loaded::new(value.as_bytes().to_vec());
        if let Some(ttl) = answer.get("ttl").and_then(Value::as_f64) {
            loaded = loaded.ttl(Duration::from_secs_f64(ttl));
        }
        if let Some(tags) = answer.get("tags").and_then(Value::as_array) {
            loaded = loaded.tags(tags.iter().map(|t| t.as_str().unwrap().to_owned()));
        }
        Ok(Fetched::Value(loaded))
    }

    fn load_many(&self, keys: Vec<String>) -> tierstack::Result<HashMap<String, Fetched>> {
        let mut sorted = keys;
        sorted.sort();
        *self.batch_keys.lock().unwrap() = Some(sorted);
        let answer = self.next()?;
        let values = answer["values"].as_object().expect("a batch answer");
        Ok(values
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Fetched::value(v.as_str().unwrap().as_bytes().to_vec()),
                )
            })
            .collect())
    }
}

/// What one step produced: a JSON result, or an error kind.
type Outcome = Result<Value, String>;

/// Why a vector was not run (a step needs what this machine lacks).
struct Skip(String);

struct Runner {
    /// A read-only bind mount of `dir` onto itself, from `make_read_only`.
    read_only: Option<ReadOnlyMount>,
    dir: tempfile::TempDir,
    config: Value,
    cache: Option<Cache>,
    script: Arc<Script>,
    read_through: bool,
    /// The source can store and remove (`writable`).
    writable: bool,
}

/// `dir` bind-mounted read-only onto itself; detached when dropped.
struct ReadOnlyMount(std::ffi::CString);

impl ReadOnlyMount {
    fn new(dir: &Path) -> Result<Self, Skip> {
        use std::os::unix::ffi::OsStrExt;
        let target = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        let mount = |source: *const libc::c_char, flags| {
            // SAFETY: NUL-terminated strings that outlive the call, or NULL.
            match unsafe {
                libc::mount(
                    source,
                    target.as_ptr(),
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                )
            } {
                0 => Ok(()),
                _ => Err(Skip(format!(
                    "make_read_only: mounting {} read-only is not permitted here: {}",
                    dir.display(),
                    std::io::Error::last_os_error()
                ))),
            }
        };
        mount(target.as_ptr(), libc::MS_BIND)?;
        let bound = ReadOnlyMount(target.clone());
        mount(
            c"none".as_ptr(),
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
        )?;
        Ok(bound)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        // SAFETY: a NUL-terminated path.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

impl Runner {
    fn new(vector: &Value) -> Self {
        Self {
            read_only: None,
            dir: tempfile::tempdir().unwrap(),
            config: vector.get("config").cloned().unwrap_or_else(|| json!({})),
            cache: None,
            script: Script::new(vector),
            read_through: vector.get("read_through") == Some(&Value::Bool(true)),
            writable: vector.get("writable") == Some(&Value::Bool(true)),
        }
    }

    fn open(&mut self, config: &Value) -> Result<(), Error> {
        let mut config = config.clone();
        if let Value::Object(map) = &mut config {
            let sqlite = map.entry("sqlite").or_insert_with(|| json!({}));
            if let Value::Object(sqlite) = sqlite
                && sqlite.get("enabled") != Some(&Value::Bool(false))
            {
                let path = self.dir.path().join("cache.db");
                sqlite.insert("path".into(), json!(path.to_str().unwrap()));
            }
        }
        let mut builder = Cache::builder().config(Config::from_json(&config.to_string())?);
        if self.read_through || self.writable {
            let script = self.script.clone();
            let source = tierstack::source::from_blocking_fn(move |_key| script.load());
            if self.writable {
                let (store, remove) = (self.script.clone(), self.script.clone());
                builder = builder.source(source.with_writes(
                    move |key, value, _id| store.write(key, Some(value)),
                    move |key, _id| remove.write(key, None),
                ));
            } else {
                builder = builder.source(source);
            }
        }
        self.cache = Some(builder.build_blocking()?);
        Ok(())
    }

    fn cache(&self) -> &Cache {
        self.cache.as_ref().expect("the vector opened a cache")
    }

    fn step(&mut self, step: &Value) -> Result<Outcome, Skip> {
        if step["op"] == "make_read_only" {
            self.read_only = Some(ReadOnlyMount::new(self.dir.path())?);
            return Ok(Ok(Value::Null));
        }
        Ok(self.call(step))
    }

    fn call(&mut self, step: &Value) -> Outcome {
        let kind = |e: Error| e.kind().as_str().to_owned();
        let key = || step["key"].as_str().unwrap_or_default();
        let bytes = |v: &Value| v.as_str().expect("values are strings").as_bytes().to_vec();
        let options = |step: &Value| -> Result<SetOptions, Error> {
            let mut options = SetOptions::new();
            if let Some(ttl) = step.get("ttl").map(ttl_seconds)
                && let Some(ttl) = ttl_from_seconds(ttl)?
            {
                options = options.ttl(ttl);
            }
            if let Some(tags) = step.get("tags").and_then(Value::as_array) {
                options = options.tags(tags.iter().map(|t| t.as_str().unwrap().to_owned()));
            }
            Ok(options)
        };
        let text = |b: &[u8]| json!(String::from_utf8(b.to_vec()).expect("UTF-8 values"));
        match step["op"].as_str().expect("every step has an op") {
            "open" => {
                let config = step.get("config").cloned().unwrap_or(self.config.clone());
                self.open(&config).map(|()| Value::Null).map_err(kind)
            }
            "reopen" => {
                self.cache().close().map_err(kind)?;
                let config = self.config.clone();
                self.open(&config).map(|()| Value::Null).map_err(kind)
            }
            "close" => self.cache().close().map(|()| Value::Null).map_err(kind),
            "set" => {
                let options = options(step).map_err(kind)?;
                let value = bytes(&step["value"]);
                let cache = self.cache();
                cache
                    .set_with(key(), value, options)
                    .map(|()| Value::Null)
                    .map_err(kind)
            }
            "set_json" => {
                let value = step["json"].to_string().into_bytes();
                self.cache()
                    .set(key(), value)
                    .map(|()| Value::Null)
                    .map_err(kind)
            }
            "get" => Ok(match self.cache().get(key()).map_err(kind)? {
                Some(v) => text(&v),
                None => Value::Null,
            }),
            "get_json" => Ok(match self.cache().get(key()).map_err(kind)? {
                Some(v) => serde_json::from_slice(&v).map_err(|_| "invalid_value".to_owned())?,
                None => Value::Null,
            }),
            "lookup" => Ok(match self.cache().lookup(key()).map_err(kind)? {
                Some(hit) if hit.stale => {
                    json!({"value": text(&hit.value), "tier": hit.tier.as_str(), "stale": true})
                }
                Some(hit) => json!({"value": text(&hit.value), "tier": hit.tier.as_str()}),
                None => Value::Null,
            }),
            "get_or_load" => get_or_load(self.cache(), &self.script, step),
            "get_or_load_many" => {
                let keys: Vec<String> = step["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k.as_str().unwrap().to_owned())
                    .collect();
                let script = self.script.clone();
                *script.batch_keys.lock().unwrap() = None;
                let options = get_options(step).map_err(kind)?;
                let values = self
                    .cache()
                    .get_or_load_many(&keys, move |missing| script.load_many(missing), options)
                    .map_err(kind)?;
                if let Some(wanted) = step.get("loader_keys") {
                    let handed = self.script.batch_keys.lock().unwrap().clone();
                    let handed = handed.map_or(Value::Null, |k| json!(k));
                    if &handed != wanted {
                        return Err(format!("the loader was handed {handed}, not {wanted}"));
                    }
                }
                let found: Map<String, Value> = keys
                    .iter()
                    .zip(values)
                    .filter_map(|(k, v)| Some((k.clone(), text(&v?))))
                    .collect();
                Ok(Value::Object(found))
            }
            "loader_calls" => Ok(json!(self.script.calls.load(Ordering::SeqCst))),
            "concurrent" => {
                let times = step["times"].as_u64().unwrap() as usize;
                let inner = &step["step"];
                let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
                    let threads: Vec<_> = (0..times)
                        .map(|_| {
                            let (cache, script) = (self.cache(), &self.script);
                            scope.spawn(move || match inner["op"].as_str() {
                                Some("get_or_load") => get_or_load(cache, script, inner),
                                Some("get") => cache
                                    .get(inner["key"].as_str().unwrap())
                                    .map(|v| v.map_or(Value::Null, |v| text(&v)))
                                    .map_err(|e| e.kind().as_str().to_owned()),
                                op => panic!("concurrent {op:?}"),
                            })
                        })
                        .collect();
                    threads.into_iter().map(|t| t.join().unwrap()).collect()
                });
                for outcome in outcomes {
                    if let Some(why) = mismatch(inner, &outcome) {
                        return Err(why);
                    }
                }
                Ok(Value::Null)
            }
            "breaker" => {
                let status = serde_json::to_value(self.cache().breaker_status()).unwrap();
                let expected = step["expect"].as_object().expect("an object to compare");
                Ok(Value::Object(
                    expected
                        .keys()
                        .map(|k| (k.clone(), status[k].clone()))
                        .collect(),
                ))
            }
            "invalidate_tag" => {
                let tag = step["tag"].as_str().unwrap();
                self.cache()
                    .invalidate_tag(tag)
                    .map(|n| json!(n))
                    .map_err(kind)
            }
            "flush" => self.cache().flush().map(|()| Value::Null).map_err(kind),
            "source_writes" => Ok(Value::Array(self.script.writes.lock().unwrap().clone())),
            "outbox" => {
                let stats = serde_json::to_value(self.cache().outbox_stats()).unwrap();
                let expected = step["expect"].as_object().expect("an object to compare");
                Ok(Value::Object(
                    expected
                        .keys()
                        .map(|k| (k.clone(), stats[k].clone()))
                        .collect(),
                ))
            }
            "dead_letters" => {
                let dead = self.cache().dead_letters().map_err(kind)?;
                Ok(dead
                    .iter()
                    .map(|d| json!({"key": d.key, "op": d.op, "attempts": d.attempts}))
                    .collect())
            }
            "retry_dead_letters" => self
                .cache()
                .retry_dead_letters()
                .map(|n| json!(n))
                .map_err(kind),
            "purge_dead_letters" => self
                .cache()
                .purge_dead_letters()
                .map(|n| json!(n))
                .map_err(kind),
            "breaker_open" => {
                self.cache().breaker_open();
                Ok(Value::Null)
            }
            "breaker_close" => {
                self.cache().breaker_close();
                Ok(Value::Null)
            }
            "has" => self.cache().has(key()).map(Value::Bool).map_err(kind),
            "delete" => self.cache().delete(key()).map(Value::Bool).map_err(kind),
            "mget" => {
                let keys: Vec<&str> = step["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k.as_str().unwrap())
                    .collect();
                let values = self.cache().mget(&keys).map_err(kind)?;
                let found: Map<String, Value> = keys
                    .iter()
                    .zip(values)
                    .filter_map(|(k, v)| Some(((*k).to_owned(), text(&v?))))
                    .collect();
                Ok(Value::Object(found))
            }
            "mset" => {
                let options = options(step).map_err(kind)?;
                let entries: Vec<(String, Vec<u8>)> = step["entries"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), bytes(v)))
                    .collect();
                let cache = self.cache();
                cache
                    .mset_with(entries, options)
                    .map(|()| Value::Null)
                    .map_err(kind)
            }
            "keys" => {
                let pattern = step["pattern"].as_str().unwrap();
                self.cache().keys(pattern).map(|k| json!(k)).map_err(kind)
            }
            "len" => self.cache().len().map(|n| json!(n)).map_err(kind),
            "clear" => self.cache().clear().map(|()| Value::Null).map_err(kind),
            "sleep" => {
                std::thread::sleep(seconds(step));
                Ok(Value::Null)
            }
            "advance" => {
                tierstack::advance_test_clock(seconds(step));
                Ok(Value::Null)
            }
            op => panic!("unknown op {op:?}"),
        }
    }
}

fn get_options(step: &Value) -> Result<GetOptions, Error> {
    let mut options = GetOptions::new();
    if let Some(ttl) = step.get("ttl").map(ttl_seconds)
        && let Some(ttl) = ttl_from_seconds(ttl)?
    {
        options = options.ttl(ttl);
    }
    Ok(options)
}

fn get_or_load(cache: &Cache, script: &Arc<Script>, step: &Value) -> Outcome {
    let kind = |e: Error| e.kind().as_str().to_owned();
    let options = get_options(step).map_err(kind)?;
    let script = script.clone();
    let value = cache
        .get_or_load(
            step["key"].as_str().unwrap(),
            move |_key| script.load(),
            options,
        )
        .map_err(kind)?;
    Ok(value.map_or(Value::Null, |v| {
        json!(String::from_utf8(v.to_vec()).expect("UTF-8 values"))
    }))
}

/// Why `outcome` is not what `step` wants, if it is not.
fn mismatch(step: &Value, outcome: &Outcome) -> Option<String> {
    let wanted_error = step.get("error").and_then(Value::as_str);
    match (outcome, wanted_error, step.get("expect")) {
        (Err(kind), Some(wanted), _) if kind == wanted => None,
        (Ok(_), None, None) => None,
        (Ok(got), None, Some(expected)) if got == expected => None,
        _ => Some(format!(
            "step {step}: got {outcome:?}, wanted {}",
            wanted_error.map_or_else(
                || step
                    .get("expect")
                    .map_or("success".into(), Value::to_string),
                |w| format!("error {w}")
            )
        )),
    }
}

/// A `sleep` or `advance` step's `seconds`.
fn seconds(step: &Value) -> Duration {
    let seconds = step["seconds"].as_f64().expect("`seconds` is a number");
    Duration::try_from_secs_f64(seconds).expect("`seconds` is a duration")
}

/// A step's `ttl` in seconds: a JSON number, or one of the strings `"NaN"`,
/// `"inf"`, `"-inf"` for the values JSON cannot hold.
fn ttl_seconds(ttl: &Value) -> f64 {
    match ttl {
        Value::Number(n) => n.as_f64().expect("a number"),
        Value::String(s) if s == "NaN" => f64::NAN,
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        other => panic!("ttl {other} is neither a number nor \"NaN\", \"inf\" or \"-inf\""),
    }
}

/// Runs one vector: `Ok(None)` if it passed, `Ok(Some(why))` if it was
/// skipped, else the first step that differs, described.
fn run(vector: &Value) -> Result<Option<String>, String> {
    let mut runner = Runner::new(vector);
    let config = runner.config.clone();
    runner.open(&config).map_err(|e| format!("open: {e}"))?;
    for (i, step) in vector["steps"].as_array().unwrap().iter().enumerate() {
        let outcome = match runner.step(step) {
            Ok(outcome) => outcome,
            Err(Skip(why)) => return Ok(Some(why)),
        };
        if let Some(why) = mismatch(step, &outcome) {
            return Err(format!("step {i}: {why}"));
        }
    }
    // Closed before the mount goes, so that it is not busy.
    runner.cache.take();
    Ok(None)
}

fn vector_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance/vectors");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Every vector, one after another in this one test: the test clock that
/// `advance` moves is the process's, shared by every cache opened with
/// `test_clock`, so a vector running alongside another could see its time
/// jump.
#[test]
fn every_vector_passes() {
    let files = vector_files();
    assert!(files.len() >= 3, "vector files missing: {files:?}");
    let (mut passed, mut failed) = (0, Vec::new());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for vector in doc["vectors"].as_array().unwrap() {
            let title = vector["name"].as_str().unwrap();
            match run(vector) {
                Ok(None) => {
                    println!("ok {name}: {title}");
                    passed += 1;
                }
                Ok(Some(why)) => println!("skip {name}: {title}: {why}"),
                Err(why) => {
                    println!("FAIL {name}: {title}: {why}");
                    failed.push(format!("{name}: {title}: {why}"));
                }
            }
        }
    }
    println!("conformance: {passed} passed, {} failed", failed.len());
    assert!(failed.is_empty(), "{failed:#?}");
}
