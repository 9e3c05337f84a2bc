//! Launches a headless Chromium and drives its pages over the Chrome DevTools Protocol (CDP).
//!
//! Chromium runs device bound sessions (DBSC) only over HTTPS without a certificate error, so the
//! caller passes the base64 SHA-256 hash of the test server's SubjectPublicKeyInfo, which
//! `--ignore-certificate-errors-spki-list` makes Chromium trust. `scripts/install-chromium.sh`
//! installs Debian's `chromium` package.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of these helpers"
)]

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::{Instant, sleep, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// Environment variable that overrides the Chromium binary.
pub const BINARY_ENV: &str = "DEVBOUND_CHROMIUM";

const DEFAULT_BINARY: &str = "/usr/bin/chromium";

/// Turns on DBSC without an origin trial token or a signing quota, with software keys (Linux has
/// no hardware key provider for Chromium) and with the DBSC events of the DevTools protocol.
const DBSC_FEATURES: &str = "--enable-features=\
    DeviceBoundSessions:RequireOriginTrialTokens/false/RefreshQuota/false,\
    EnableBoundSessionCredentialsSoftwareKeysForManualTesting,\
    DeviceBoundSessionsDevTools";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(30);
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);
const STDERR_TAIL_LINES: usize = 20;

/// A headless Chromium process with a fresh profile, killed and deleted on drop.
pub struct Chromium {
    child: Child,
    devtools_port: u16,
    temp_dir: TempDir,
}

impl Chromium {
    /// Starts Chromium, trusting certificates whose SPKI SHA-256 hash is `spki_sha256_base64`,
    /// and waits until its DevTools endpoint listens.
    pub async fn launch(spki_sha256_base64: &str) -> Result<Self, String> {
        let temp_dir = TempDir::new()
            .map_err(|error| format!("failed to create a temporary directory: {error}"))?;

        let child = spawn(temp_dir.path(), spki_sha256_base64)?;
        let mut chromium = Chromium {
            child,
            devtools_port: 0,
            temp_dir,
        };

        chromium.devtools_port = chromium.wait_for_devtools_port().await?;
        Ok(chromium)
    }

    /// Returns the loopback port of the DevTools HTTP and WebSocket endpoint.
    pub fn devtools_port(&self) -> u16 {
        self.devtools_port
    }

    /// Returns the process id of the browser process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Opens a new tab at `about:blank` and connects to it, with the `Page` domain and
    /// lifecycle events enabled.
    pub async fn open_page(&self) -> Result<CdpSession, String> {
        let browser = CdpSession::connect(&self.browser_url()?).await?;
        let target = browser
            .send("Target.createTarget", json!({ "url": "about:blank" }))
            .await?;

        let target_id = target["targetId"]
            .as_str()
            .ok_or_else(|| format!("Target.createTarget returned no targetId: {target}"))?;
        let page_url = format!(
            "ws://127.0.0.1:{}/devtools/page/{target_id}",
            self.devtools_port
        );
        let page = CdpSession::connect(&page_url).await?;

        page.send("Page.enable", json!({})).await?;
        page.send("Page.setLifecycleEventsEnabled", json!({ "enabled": true }))
            .await?;
        Ok(page)
    }

    fn browser_url(&self) -> Result<String, String> {
        let file = self.active_port_file();
        let (port, path) = read_active_port(&file)
            .ok_or_else(|| format!("{} is missing or incomplete", file.display()))?;
        Ok(format!("ws://127.0.0.1:{port}{path}"))
    }

    async fn wait_for_devtools_port(&mut self) -> Result<u16, String> {
        let file = self.active_port_file();
        let deadline = Instant::now() + STARTUP_TIMEOUT;

        loop {
            if let Some((port, _)) = read_active_port(&file) {
                return Ok(port);
            }

            if let Ok(Some(status)) = self.child.try_wait() {
                let stderr = self.stderr_tail();
                return Err(format!(
                    "Chromium exited with {status} before opening DevTools. Stderr:\n{stderr}"
                ));
            }

            if Instant::now() >= deadline {
                let file = file.display();
                let stderr = self.stderr_tail();
                return Err(format!(
                    "timed out after {STARTUP_TIMEOUT:?} waiting for {file}. Stderr:\n{stderr}"
                ));
            }

            sleep(Duration::from_millis(50)).await;
        }
    }

    fn active_port_file(&self) -> PathBuf {
        profile_dir(self.temp_dir.path()).join("DevToolsActivePort")
    }

    fn stderr_tail(&self) -> String {
        let log = std::fs::read_to_string(stderr_file(self.temp_dir.path())).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
        lines[start..].join("\n")
    }
}

impl Drop for Chromium {
    /// Kills the browser process by its own pid and removes the profile. Its child processes
    /// exit shortly after it but may still write to the profile meanwhile, so removal is retried.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_dir_with_retries(self.temp_dir.path());
    }
}

fn remove_dir_with_retries(dir: &Path) {
    let deadline = std::time::Instant::now() + REMOVE_TIMEOUT;

    loop {
        let removed = std::fs::remove_dir_all(dir).is_ok() || !dir.exists();
        if removed || std::time::Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(temp_dir: &Path, spki_sha256_base64: &str) -> Result<Child, String> {
    let binary = std::env::var(BINARY_ENV).unwrap_or_else(|_| DEFAULT_BINARY.to_string());
    let stderr = File::create(stderr_file(temp_dir))
        .map_err(|error| format!("failed to create the Chromium stderr log: {error}"))?;

    Command::new(&binary)
        .args(launch_arguments(&profile_dir(temp_dir), spki_sha256_base64))
        // Chromium 156 leaves its singleton socket directory in TMPDIR when it is killed, so
        // TMPDIR points into the temporary directory that drop removes.
        .env("TMPDIR", temp_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|error| {
            format!(
                "failed to start {binary}: {error}. \
                 Run scripts/install-chromium.sh or set {BINARY_ENV}"
            )
        })
}

fn launch_arguments(profile: &Path, spki_sha256_base64: &str) -> Vec<String> {
    let fixed = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        DBSC_FEATURES,
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
    ];

    let mut arguments: Vec<String> = fixed.iter().map(|flag| flag.to_string()).collect();
    arguments.push(format!("--user-data-dir={}", profile.display()));
    arguments.push(format!(
        "--ignore-certificate-errors-spki-list={spki_sha256_base64}"
    ));
    arguments.push("about:blank".to_string());
    arguments
}

fn profile_dir(temp_dir: &Path) -> PathBuf {
    temp_dir.join("profile")
}

fn stderr_file(temp_dir: &Path) -> PathBuf {
    temp_dir.join("chromium-stderr.log")
}

/// Parses `DevToolsActivePort`, which Chromium writes into the profile as two lines: the port
/// and the path of the browser's WebSocket endpoint.
fn read_active_port(file: &Path) -> Option<(u16, String)> {
    let contents = std::fs::read_to_string(file).ok()?;
    let mut lines = contents.lines();

    let port = lines.next()?.trim().parse().ok()?;
    let path = lines.next()?.trim();
    if !path.starts_with("/devtools/browser/") {
        return None;
    }
    Some((port, path.to_string()))
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One DevTools WebSocket connection. Events that arrive while a call waits for something else
/// are buffered until a `wait_for_event` call takes them, so none is lost between calls.
pub struct CdpSession {
    connection: Mutex<Connection>,
}

struct Connection {
    socket: Socket,
    last_id: u64,
    events: VecDeque<Value>,
}

impl CdpSession {
    async fn connect(url: &str) -> Result<Self, String> {
        let (socket, _) = connect_async(url)
            .await
            .map_err(|error| format!("failed to connect to DevTools at {url}: {error}"))?;

        let connection = Connection {
            socket,
            last_id: 0,
            events: VecDeque::new(),
        };
        Ok(CdpSession {
            connection: Mutex::new(connection),
        })
    }

    /// Sends a CDP command and returns its `result` object, or the protocol error as text.
    pub async fn send(&self, method: &str, params: Value) -> Result<Value, String> {
        let mut connection = self.connection.lock().await;
        connection.last_id += 1;
        let id = connection.last_id;

        let request = json!({ "id": id, "method": method, "params": params });
        connection
            .socket
            .send(Message::text(request.to_string()))
            .await
            .map_err(|error| format!("failed to send {method}: {error}"))?;

        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let message = connection.read_until(deadline).await?.ok_or_else(|| {
                format!("timed out after {COMMAND_TIMEOUT:?} waiting for the response to {method}")
            })?;

            if message["id"] == id {
                return command_result(method, message);
            }
            connection.buffer_if_event(message);
        }
    }

    /// Waits for the event `method` whose `params` satisfy `predicate`, and returns those
    /// `params`. Buffered events are searched first, oldest first.
    pub async fn wait_for_event<F>(
        &self,
        method: &str,
        timeout: Duration,
        predicate: F,
    ) -> Result<Value, String>
    where
        F: Fn(&Value) -> bool,
    {
        let is_match = |event: &Value| event["method"] == method && predicate(&event["params"]);
        let mut connection = self.connection.lock().await;

        let position = connection.events.iter().position(is_match);
        if let Some(event) = position.and_then(|index| connection.events.remove(index)) {
            return Ok(event["params"].clone());
        }

        let deadline = Instant::now() + timeout;
        loop {
            let message = connection.read_until(deadline).await?.ok_or_else(|| {
                format!("timed out after {timeout:?} waiting for the event {method}")
            })?;

            if is_match(&message) {
                return Ok(message["params"].clone());
            }
            connection.buffer_if_event(message);
        }
    }

    /// Navigates the page to `url` and waits for its `load` lifecycle event.
    pub async fn navigate(&self, url: &str) -> Result<(), String> {
        let result = self.send("Page.navigate", json!({ "url": url })).await?;
        if let Some(error) = result["errorText"].as_str() {
            return Err(format!("navigation to {url} failed: {error}"));
        }

        // A same-document navigation has no loader and fires no load event.
        let Some(loader_id) = result["loaderId"].as_str() else {
            return Ok(());
        };

        let is_load = |params: &Value| params["name"] == "load" && params["loaderId"] == loader_id;
        self.wait_for_event("Page.lifecycleEvent", NAVIGATION_TIMEOUT, is_load)
            .await
            .map_err(|error| format!("page {url} did not finish loading: {error}"))?;
        Ok(())
    }

    /// Evaluates `expression` in the page, awaits it if it is a promise, and returns its value
    /// as JSON (`null` for `undefined`).
    pub async fn evaluate(&self, expression: &str) -> Result<Value, String> {
        let params = json!({
            "expression": expression,
            "awaitPromise": true,
            "returnByValue": true,
        });
        let result = self.send("Runtime.evaluate", params).await?;

        if let Some(details) = result.get("exceptionDetails") {
            let description = exception_description(details);
            return Err(format!("JavaScript `{expression}` threw: {description}"));
        }
        // A missing `value`, as for `undefined`, indexes as `null`.
        Ok(result["result"]["value"].clone())
    }

    /// Runs `fetch(url)` in the page with cookies included and returns the HTTP status.
    pub async fn fetch_status(&self, url: &str) -> Result<u16, String> {
        let url_literal = Value::from(url).to_string();
        let expression = format!(
            "fetch({url_literal}, {{ credentials: 'include' }}).then(response => response.status)"
        );

        let status = self.evaluate(&expression).await?;
        status
            .as_u64()
            .and_then(|status| u16::try_from(status).ok())
            .ok_or_else(|| format!("fetch({url}) returned {status} instead of an HTTP status"))
    }
}

impl Connection {
    /// Reads the next JSON message, or returns `None` once `deadline` passes.
    async fn read_until(&mut self, deadline: Instant) -> Result<Option<Value>, String> {
        match timeout_at(deadline, self.read_message()).await {
            Ok(message) => message.map(Some),
            Err(_elapsed) => Ok(None),
        }
    }

    async fn read_message(&mut self) -> Result<Value, String> {
        loop {
            let frame = self
                .socket
                .next()
                .await
                .ok_or_else(|| "DevTools closed the WebSocket connection".to_string())?
                .map_err(|error| format!("failed to read from DevTools: {error}"))?;

            match frame {
                Message::Text(text) => {
                    return serde_json::from_str(&text)
                        .map_err(|error| format!("DevTools sent invalid JSON: {error}"));
                }
                Message::Close(_) => return Err("DevTools closed the WebSocket connection".into()),
                _ => continue,
            }
        }
    }

    fn buffer_if_event(&mut self, message: Value) {
        if message.get("method").is_some() {
            self.events.push_back(message);
        }
    }
}

fn command_result(method: &str, response: Value) -> Result<Value, String> {
    if let Some(error) = response.get("error") {
        return Err(format!("{method} failed: {error}"));
    }
    Ok(response["result"].clone())
}

fn exception_description(details: &Value) -> String {
    let description = details["exception"]["description"].as_str();
    let text = details["text"].as_str();
    description
        .or(text)
        .unwrap_or("unknown exception")
        .to_string()
}
