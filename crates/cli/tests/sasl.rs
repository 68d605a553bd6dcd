//! The pipeline on a broker that requires SASL/SCRAM (tansu with
//! `--authentication`, its users stored at start by `--scram-credentials`):
//! a principal for each service and each customer, every credential passed
//! only in the environment (`FORECAST_KAFKA_SASL_*`), never on a command
//! line. What a broker refuses (no credentials, a wrong password, an
//! unknown user, a client that ignores a failed exchange) is tested here
//! too; docs/security.md lists what each principal may do on Apache Kafka.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use forecast_tests::processes::*;
use serde_json::Value;

/// The customers of `examples/stream.jsonl` that are registered.
const CUSTOMERS: [&str; 3] = ["TENCENT", "BYTEDANCE", "ALIBABA"];

/// `forecastctl args` as `who`; fails the test unless it succeeds, and
/// returns its standard output.
fn ok_as(args: &[String], who: &Principal) -> Vec<u8> {
    let out = run_as(args, Some(who));
    assert!(
        out.status.success(),
        "forecastctl {} as {}: {}",
        args[0],
        who.name,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_secret_kept(&out, who);
    out.stdout
}

/// No output of a client ever shows its password.
fn assert_secret_kept(out: &std::process::Output, who: &Principal) {
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(&who.password),
            "the password of {} was printed",
            who.name
        );
    }
}

/// The examples of `customer`, dated now (the live validator refuses a
/// `submitted_at` more than 5 minutes from the broker's timestamp), signed
/// with `key` by `forecastctl sign`.
fn signed_examples(customer: &str, key: &Path, dir: &Path) -> std::path::PathBuf {
    let now = forecast_model::Timestamp::now().to_string();
    let text = std::fs::read_to_string(repo().join("examples/stream.jsonl")).unwrap();
    let docs: String = text
        .lines()
        // Only what `sign` signs: documents that decode.
        .filter(|l| forecast_model::parse_submission(l.as_bytes()).is_ok())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|d| d["customer_id"] == customer)
        .map(|mut d| {
            d["submitted_at"] = now.clone().into();
            d.to_string() + "\n"
        })
        .collect();
    assert!(!docs.is_empty(), "no example of {customer}");
    let plain = dir.join(format!("{customer}.jsonl"));
    std::fs::write(&plain, docs).unwrap();
    let signed = dir.join(format!("{customer}.signed.jsonl"));
    sign_file(key, &plain, &signed);
    signed
}

#[test]
fn each_service_and_customer_uses_its_own_principal_and_the_broker_refuses_the_rest() {
    let operator = Principal::new("operator");
    let validator = Principal::new("validator");
    let aggregator = Principal::new("aggregator");
    let planner = Principal::new("planner");
    let customers: Vec<(String, Principal)> = CUSTOMERS
        .iter()
        .map(|c| (c.to_string(), Principal::new(&format!("customer-{c}"))))
        .collect();
    let mut users = vec![&operator, &validator, &aggregator, &planner];
    users.extend(customers.iter().map(|(_, p)| p));
    let broker = Broker::start_sasl(&users);
    let names = Names::new("sasl");
    let dir = std::env::temp_dir().join(format!("forecast-sasl-{}", names.suffix));
    std::fs::create_dir_all(&dir).unwrap();
    let create = names.command(&["topics", "create", "--partitions", "2"], &broker.brokers);

    // Refused, with a message that says why: no credentials, a wrong
    // password of a known user, an unknown user. None creates a topic.
    let wrong = operator.with_password("not-the-password");
    let mallory = Principal::new("mallory");
    // A broker that resets every connection looks like one that is down
    // (75, retry); a refused authentication is the deployment's (78).
    for (what, who, says, code) in [
        ("no credentials", None, "no broker answered", 75),
        (
            "a wrong password",
            Some(&wrong),
            "refused to authenticate this client",
            78,
        ),
        (
            "an unknown user",
            Some(&mallory),
            "refused to authenticate this client",
            78,
        ),
    ] {
        let started = Instant::now();
        let out = run_as(&create, who);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{what}: {stderr}");
        assert!(stderr.contains(says), "{what}: {stderr}");
        if let Some(who) = who {
            assert_secret_kept(&out, who);
        }
        eprintln!(
            "{what}: refused in {:.1} s: {}",
            started.elapsed().as_secs_f64(),
            stderr.lines().last().unwrap_or_default()
        );
    }

    // The operator creates the topics.
    ok_as(&create, &operator);

    // A key per customer; the validator requires signatures with them.
    let keys = dir.join("keys.jsonl");
    let signed: Vec<_> = customers
        .iter()
        .map(|(customer, _)| {
            let key = generate_key(
                &dir,
                &keys,
                customer,
                &customer.to_lowercase(),
                &[
                    "--valid-from",
                    "2020-01-01T00:00:00Z",
                    "--valid-until",
                    "2036-01-01T00:00:00Z",
                ],
            );
            signed_examples(customer, &key, &dir)
        })
        .collect();

    // The services, each as its own principal.
    let restricted = repo().join("examples/restricted-parties.csv");
    let mut services = Services(Vec::new());
    for (service, who, extra) in [
        (
            "validate",
            &validator,
            vec![
                "--keys".to_owned(),
                keys.display().to_string(),
                "--restricted-parties".to_owned(),
                restricted.display().to_string(),
            ],
        ),
        ("aggregate", &aggregator, vec![]),
    ] {
        let mut args = names.command(&[service], &broker.brokers);
        args.extend(["--group".to_owned(), format!("{service}-{}", names.suffix)]);
        args.extend(extra);
        let log = dir.join(format!("{service}.log"));
        services
            .0
            .push((spawn_logged_as(&args, &log, Some(who)), log));
    }

    // Each customer submits its own signed documents as itself.
    for ((_, who), file) in customers.iter().zip(&signed) {
        let mut args = names.command(&["submit"], &broker.brokers);
        args.push(file.display().to_string());
        let out = run_as(&args, Some(who));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "submit as {}: {stderr}", who.name);
        assert!(
            stderr.contains(" sent, 0 refused locally, 0 failed"),
            "{stderr}"
        );
        assert_secret_kept(&out, who);
    }

    // Replay of the same signed documents with the same keys.
    let all = dir.join("all.signed.jsonl");
    let text: String = signed
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    std::fs::write(&all, text).unwrap();
    let out = forecastctl_clean(&[
        "replay",
        "--format",
        "json",
        "--keys",
        keys.to_str().unwrap(),
        "--restricted-parties",
        restricted.to_str().unwrap(),
        all.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        expected["demand"].as_array().is_some_and(|d| !d.is_empty()),
        "replay shows no demand: {expected}"
    );

    // The planner's principal reads demand: what replay says.
    let demand_args = names.command(&["demand", "--format", "json"], &broker.brokers);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut demand = Value::Null;
    while Instant::now() < deadline {
        demand = serde_json::from_slice(&ok_as(&demand_args, &planner)).unwrap();
        if demand == expected["demand"] {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let logs: String = services
        .0
        .iter()
        .map(|(_, log)| std::fs::read_to_string(log).unwrap_or_default())
        .collect();
    assert_eq!(demand, expected["demand"], "{logs}");
    for user in &users {
        assert!(!logs.contains(&user.password), "a password in the logs");
    }
    drop(services);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The services of a test, and their logs; stopped when dropped, so that a
/// failing test leaves none running.
struct Services(Vec<(std::process::Child, std::path::PathBuf)>);

impl Drop for Services {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the broker did with a request.
#[derive(Debug, PartialEq)]
enum Answer {
    /// The response body (after the length and the correlation id).
    Served(Vec<u8>),
    /// The broker closed the connection.
    Closed,
}

/// One Kafka request (header v1: key, version, correlation id, client id).
/// A broker that neither answers nor closes within 10 s fails the test.
fn request(stream: &mut TcpStream, key: i16, version: i16, id: i32, body: &[u8]) -> Answer {
    let client = b"sasl-test";
    let mut frame = Vec::new();
    frame.extend(key.to_be_bytes());
    frame.extend(version.to_be_bytes());
    frame.extend(id.to_be_bytes());
    frame.extend((client.len() as i16).to_be_bytes());
    frame.extend(client);
    frame.extend(body);
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend(frame);
    if stream.write_all(&out).is_err() {
        return Answer::Closed;
    }
    let mut size = [0; 4];
    match stream.read_exact(&mut size) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Answer::Closed,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Answer::Closed,
        Err(e) => panic!("request {key}: no answer and not closed: {e}"),
    }
    let mut response = vec![0; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut response).unwrap();
    assert_eq!(response[..4], id.to_be_bytes(), "correlation id");
    Answer::Served(response.split_off(4))
}

/// A connection to `brokers` whose reads give up after 10 s.
fn connect(brokers: &str) -> TcpStream {
    let stream = TcpStream::connect(brokers).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// A Kafka `BYTES` (length, then the bytes).
fn bytes(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as i32).to_be_bytes().to_vec();
    v.extend(b);
    v
}

/// The broker fix of deploy/tansu.patch (7, upstream 0cc3ac9): a client that
/// runs a SCRAM exchange with a wrong proof and then carries on as if it
/// had succeeded is refused. librdkafka gives up by itself, so this speaks
/// the protocol by hand: SaslHandshake v1, the two SaslAuthenticate v0
/// steps of SCRAM-SHA-256 with a made-up proof, then Metadata.
#[test]
fn a_client_that_ignores_a_failed_scram_exchange_is_refused() {
    let operator = Principal::new("operator");
    let broker = Broker::start_sasl(&[&operator]);
    for user in [operator.name.as_str(), "mallory"] {
        let mut stream = connect(&broker.brokers);
        // SaslHandshake v1 (key 17): mechanism.
        let mechanism = b"SCRAM-SHA-256";
        let mut body = (mechanism.len() as i16).to_be_bytes().to_vec();
        body.extend(mechanism);
        let Answer::Served(response) = request(&mut stream, 17, 1, 1, &body) else {
            panic!("no answer to SaslHandshake");
        };
        assert_eq!(response[..2], [0, 0], "SCRAM-SHA-256 offered");
        // SaslAuthenticate v0 (key 36): client-first.
        let nonce = "fyko+d2lbbFgONRv9qkxdawL";
        let first = format!("n,,n={user},r={nonce}");
        let Answer::Served(response) = request(&mut stream, 36, 0, 2, &bytes(first.as_bytes()))
        else {
            panic!("{user}: no server-first message");
        };
        // error code, error message (nullable string), auth bytes
        let message_len = i16::from_be_bytes([response[2], response[3]]).max(0) as usize;
        let auth = &response[4 + message_len + 4..];
        let server_first = String::from_utf8_lossy(auth).into_owned();
        let full_nonce = server_first
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .map(str::to_owned)
            // An unknown user may be answered without a nonce of the
            // server's: carry on with ours.
            .unwrap_or_else(|| nonce.to_owned());
        // client-final with a proof that cannot be right (32 zero bytes).
        let last = format!("c=biws,r={full_nonce},p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        let _ = request(&mut stream, 36, 0, 3, &bytes(last.as_bytes()));
        // Metadata v0 (key 3), all topics: must not be served.
        assert_eq!(
            request(&mut stream, 3, 0, 4, &(-1i32).to_be_bytes()),
            Answer::Closed,
            "{user}: Metadata after a failed SCRAM exchange"
        );
    }
    // The baseline: a connection that never authenticates is refused the
    // same way. (With the right password librdkafka is served: the test
    // above.)
    assert_eq!(
        request(
            &mut connect(&broker.brokers),
            3,
            0,
            1,
            &(-1i32).to_be_bytes()
        ),
        Answer::Closed
    );
}
