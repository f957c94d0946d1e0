//! A minimal SMTP sink for the tests: it stands in for the external relay
//! conversations submits email to (the code under test is the service's
//! lettre client), in its own tests and in the `rapport dev` test. It
//! listens on `127.0.0.1:0`, accepts every message — except to a recipient
//! whose address holds `reject`, answered 550 — and keeps what it received.
//! A test can make it refuse the next sessions for now (421, a relay that
//! is down) or hold a message it received unanswered (a slow relay).
use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// One message as the sink received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// MAIL FROM.
    pub from: String,
    /// RCPT TO, each.
    pub to: Vec<String>,
    /// The message, headers and body, dot-unstuffed, CRLF line ends.
    pub data: String,
    /// The user the session authenticated as, if it did.
    pub user: Option<String>,
}

impl Mail {
    /// The value of header `name` (unfolded), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// How the sink behaves now.
#[derive(Default)]
struct Control {
    /// Sessions still to refuse with 421 at MAIL FROM.
    refuse: AtomicUsize,
    /// Sessions refused so far.
    refused: AtomicUsize,
    /// Whether a received message goes unanswered until released.
    stall: tokio::sync::watch::Sender<bool>,
    /// Messages held unanswered now.
    stalled: AtomicUsize,
    /// The one `(user, password)` accepted, when the sink asks for AUTH
    /// (PLAIN or LOGIN, RFC 4954) before MAIL FROM.
    credentials: Option<(String, String)>,
}

/// A running sink.
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Mail>>>,
    control: Arc<Control>,
    task: JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    /// Starts a sink on a free port.
    pub async fn start() -> Sink {
        Self::start_with(None).await
    }

    /// Starts a sink that takes mail only after AUTH as `user` with
    /// `password`.
    pub async fn requiring(user: &str, password: &str) -> Sink {
        Self::start_with(Some((user.to_owned(), password.to_owned()))).await
    }

    async fn start_with(credentials: Option<(String, String)>) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the sink");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let control = Arc::new(Control {
            credentials,
            ..Control::default()
        });
        let (store, ctl) = (received.clone(), control.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, store.clone(), ctl.clone()));
            }
        });
        Sink {
            addr,
            received,
            control,
            task,
        }
    }

    /// Refuses the next `n` sessions with 421 (try again later).
    pub fn refuse_next(&self, n: usize) {
        self.control.refuse.store(n, Ordering::SeqCst);
    }

    /// Sessions refused so far.
    pub fn refused(&self) -> usize {
        self.control.refused.load(Ordering::SeqCst)
    }

    /// Holds every message received from now on unanswered, until
    /// [`Sink::release`].
    pub fn stall(&self) {
        self.control.stall.send_replace(true);
    }

    /// Answers the held messages, and the next ones at once.
    pub fn release(&self) {
        self.control.stall.send_replace(false);
    }

    /// Messages held unanswered now.
    pub fn stalled(&self) -> usize {
        self.control.stalled.load(Ordering::SeqCst)
    }

    /// Its URL, for `conversations.email.smtp_url`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Mail> {
        self.received.lock().unwrap().clone()
    }

    /// The first message with `header` equal to `value`, waiting for it up
    /// to ten seconds.
    pub async fn wait_for(&self, header: &str, value: &str) -> Mail {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(m) = self
                .received()
                .into_iter()
                .find(|m| m.header(header).as_deref() == Some(value))
            {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no mail with {header}: {value} within 10 s; got {:#?}",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn session(stream: TcpStream, store: Arc<Mutex<Vec<Mail>>>, control: Arc<Control>) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut mail = Mail {
        from: String::new(),
        to: Vec::new(),
        data: String::new(),
        user: None,
    };
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    if w.write_all(b"220 sink ESMTP\r\n").await.is_err() {
        return;
    }
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let answer: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            if control.credentials.is_some() {
                b"250-sink\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
            } else {
                b"250-sink\r\n250 8BITMIME\r\n"
            }
        } else if upper.starts_with("AUTH ") && control.credentials.is_some() {
            let mut ask = async |prompt: &[u8]| {
                w.write_all(prompt).await.ok()?;
                lines.next_line().await.ok().flatten()
            };
            let rest = line[5..].trim();
            let given = if rest.to_ascii_uppercase().starts_with("PLAIN") {
                let initial = rest[5..].trim().to_owned();
                let response = if initial.is_empty() {
                    ask(b"334 \r\n").await.unwrap_or_default()
                } else {
                    initial
                };
                // authzid NUL authcid NUL passwd
                b64(&response).and_then(|s| {
                    let mut parts = s.split('\0').skip(1);
                    Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
                })
            } else if rest.eq_ignore_ascii_case("LOGIN") {
                let user = ask(b"334 VXNlcm5hbWU6\r\n").await.and_then(|u| b64(&u));
                let pass = ask(b"334 UGFzc3dvcmQ6\r\n").await.and_then(|p| b64(&p));
                user.zip(pass)
            } else {
                None
            };
            if given.is_some() && given == control.credentials {
                mail.user = given.map(|(u, _)| u);
                b"235 2.7.0 authenticated\r\n"
            } else {
                b"535 5.7.8 authentication credentials invalid\r\n"
            }
        } else if upper.starts_with("MAIL FROM:")
            && control.credentials.is_some()
            && mail.user.is_none()
        {
            b"530 5.7.0 authentication required\r\n"
        } else if upper.starts_with("MAIL FROM:")
            && control
                .refuse
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            control.refused.fetch_add(1, Ordering::SeqCst);
            b"421 4.3.2 try again later\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = address(&line["MAIL FROM:".len()..]);
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            let to = address(&line["RCPT TO:".len()..]);
            if to.contains("reject") {
                b"550 5.1.1 mailbox unavailable\r\n"
            } else {
                mail.to.push(to);
                b"250 OK\r\n"
            }
        } else if upper == "DATA" {
            if w.write_all(b"354 go ahead\r\n").await.is_err() {
                return;
            }
            let mut data = Vec::new();
            while let Ok(Some(l)) = lines.next_line().await {
                if l == "." {
                    break;
                }
                data.push(l.strip_prefix('.').map_or(l.clone(), str::to_owned));
            }
            mail.data = data.join("\r\n");
            let mut stall = control.stall.subscribe();
            if *stall.borrow_and_update() {
                control.stalled.fetch_add(1, Ordering::SeqCst);
                let _ = stall.wait_for(|held| !held).await;
                control.stalled.fetch_sub(1, Ordering::SeqCst);
            }
            store.lock().unwrap().push(mail.clone());
            mail.to.clear();
            b"250 OK queued\r\n"
        } else if upper == "QUIT" {
            let _ = w.write_all(b"221 bye\r\n").await;
            return;
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 OK\r\n"
        } else {
            b"502 not implemented\r\n"
        };
        if w.write_all(answer).await.is_err() {
            return;
        }
    }
}

fn address(raw: &str) -> String {
    let raw = raw.trim();
    let inner = raw
        .strip_prefix('<')
        .and_then(|r| r.split_once('>'))
        .map_or(raw, |(a, _)| a);
    inner.to_owned()
}
