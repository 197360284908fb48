//! Starts moto's server mode (the AWS emulator) for a test, on a free loopback
//! port, and gives SDK configuration pointing at it.
//!
//! The `moto_server` program is found through `FLOTILLA_MOTO_SERVER`, which
//! `scripts/test` sets after installing the pinned moto into a virtualenv.
//!
//! moto's server answers each request on a thread of its own and its
//! DynamoDB transactions take no lock (a failed one even restores a copy of
//! the table taken before it), so under load two racing conditional writes
//! can both succeed, which DynamoDB never allows. The server is therefore
//! started through [`SERIALIZED`], which runs moto's own `main` with one
//! request at a time handled by its backends: connections stay concurrent, and
//! each request sees the whole effect of the ones before it, as in AWS.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::adapters::aws::{AwsTarget, sdk_config};

/// Environment variable naming the `moto_server` executable.
pub const MOTO_SERVER_VAR: &str = "FLOTILLA_MOTO_SERVER";

/// moto's `main`, with its WSGI application handling one request at a time.
pub const SERIALIZED: &str = r#"
import sys, threading
from moto import server
lock = threading.Lock()
handle = server.DomainDispatcherApplication.__call__
def serialized(self, environ, start_response):
    with lock:
        return handle(self, environ, start_response)
server.DomainDispatcherApplication.__call__ = serialized
server.main(sys.argv[1:])
"#;

/// A running moto server, stopped on drop.
pub struct Moto {
    child: Child,
    /// Its endpoint URL.
    pub endpoint: String,
}

impl Moto {
    /// Starts moto and waits until it accepts connections.
    pub fn start() -> Self {
        let program = std::env::var(MOTO_SERVER_VAR).unwrap_or_else(|_| {
            panic!(
                "{MOTO_SERVER_VAR} is not set: run scripts/test, which installs moto and sets it"
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        // moto's own log, for when a test needs to know why it answered 500.
        let log_path = std::env::temp_dir().join(format!("flotilla-moto-{port}.log"));
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
        // The virtualenv's python, beside its moto_server.
        let python = std::path::Path::new(&program).with_file_name("python");
        let child = Command::new(&python)
            .args(["-c", SERIALIZED, "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("could not start moto with {}: {e}", python.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// SDK configuration for this server.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config(&AwsTarget {
            endpoint_url: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            // moto on a busy machine can take seconds over a large request.
            timeouts: crate::adapters::aws::SdkTimeouts {
                connect: Duration::from_secs(10),
                attempt: Duration::from_secs(60),
                operation: Duration::from_secs(120),
            },
            credentials: None,
        })
        .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// One EC2 query-API call (moto answers unsigned requests; the credential
    /// scope in the header tells it the service). Returns the XML body.
    fn ec2(&self, action: &str) -> String {
        use std::io::{Read, Write};
        let addr = self.endpoint.trim_start_matches("http://").to_owned();
        let body = format!("Action={action}&Version=2016-11-15");
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream =
            TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connect to moto: {e}"));
        stream
            .write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("write to moto: {e}"));
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .unwrap_or_else(|e| panic!("read from moto: {e}"));
        response
    }

    /// A subnet and a security group of moto's default VPC, which Fargate
    /// tasks need.
    pub fn default_network(&self) -> (String, String) {
        let first = |xml: &str, tag: &str| {
            let open = format!("<{tag}>");
            let start = xml.find(&open).map(|i| i + open.len());
            start
                .and_then(|s| {
                    xml[s..]
                        .find(&format!("</{tag}>"))
                        .map(|e| xml[s..s + e].to_owned())
                })
                .unwrap_or_else(|| panic!("no <{tag}> in moto's answer: {xml}"))
        };
        let subnet = first(&self.ec2("DescribeSubnets"), "subnetId");
        let group = first(&self.ec2("DescribeSecurityGroups"), "groupId");
        (subnet, group)
    }
}
