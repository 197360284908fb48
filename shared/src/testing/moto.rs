//! Starts moto's server mode (the AWS emulator) for a test, on a free loopback
//! port, and gives SDK configuration pointing at it.
//!
//! The `moto_server` program is found through `FLOTILLA_MOTO_SERVER`, which
//! `scripts/test` sets after installing the pinned moto into a virtualenv.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::adapters::aws::{AwsTarget, sdk_config};

/// Environment variable naming the `moto_server` executable.
pub const MOTO_SERVER_VAR: &str = "FLOTILLA_MOTO_SERVER";

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
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {program}: {e}"));
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
