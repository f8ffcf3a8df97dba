//! The receiver the tests deliver to: real HTTP on 127.0.0.1, scripted answers.

use super::*;

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub method: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct ReceiverState {
    requests: Mutex<Vec<Recorded>>,
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    defaults: Mutex<HashMap<String, Reply>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A real HTTP receiver on 127.0.0.1. Each path answers its scripted replies in
/// order, then its default (200 unless set).
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let reply = {
        let scripted = state
            .scripts
            .lock()
            .unwrap()
            .get_mut(&path)
            .and_then(|q| q.pop_front());
        scripted
            .or_else(|| state.defaults.lock().unwrap().get(&path).cloned())
            .unwrap_or(Reply::status(200))
    };
    state.requests.lock().unwrap().push(Recorded {
        path,
        method: method.to_string(),
        headers,
        body,
        at: Instant::now(),
    });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), "ok").into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(&value).unwrap(),
        );
    }
    response
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(ReceiverState::default());
        let router = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next answers of `path`, in order.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .scripts
            .lock()
            .unwrap()
            .entry(path.into())
            .or_default()
            .extend(replies);
    }

    /// The answer of `path` once its script is spent.
    pub fn default_reply(&self, path: &str, reply: Reply) {
        self.state
            .defaults
            .lock()
            .unwrap()
            .insert(path.into(), reply);
    }

    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `path` has received at least `n` requests.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Recorded> {
        self.wait_for_within(path, n, Duration::from_secs(20)).await
    }

    pub async fn wait_for_within(&self, path: &str, n: usize, deadline: Duration) -> Vec<Recorded> {
        eventually(&format!("{n} requests to {path}"), deadline, || async {
            let got = self.requests(path);
            (got.len() >= n).then_some(got)
        })
        .await
    }
}
