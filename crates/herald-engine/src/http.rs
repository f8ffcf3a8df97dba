//! The outbound HTTP leg: one pooled reqwest client per connect timeout in use
//! (reqwest sets connect timeouts per client; endpoints rarely differ, so a handful of
//! pools serve everyone), no redirects followed, response bodies read up to a bound.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use herald_core::network::{host_ip, may_connect, Cidr};
use std::time::Duration;

use herald_core::outcome::TransportError;

/// An answer, cut to what the attempt log keeps.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A failed try: its kind and the cause's full text.
pub(crate) struct Failure {
    pub kind: TransportError,
    pub message: String,
}

pub(crate) struct Request<'a> {
    pub method: &'a str,
    pub url: url::Url,
    pub headers: &'a [(String, String)],
    pub body: bytes::Bytes,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

/// Resolves names to the addresses herald may connect to, and only those: the
/// check is on the address the connection will use, so DNS rebinding cannot pass.
struct GuardedResolver {
    allow: Arc<Vec<Cidr>>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let usable: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| may_connect(a.ip(), &allow))
                .collect();
            if usable.is_empty() {
                let refused = std::io::Error::other(format!(
                    "blocked address: {host} resolves only to addresses herald may not connect to"
                ));
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(usable.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub(crate) struct HttpClients {
    clients: Mutex<HashMap<u128, reqwest::Client>>,
    /// Networks the SSRF guard lets through.
    allow: Arc<Vec<Cidr>>,
}

impl HttpClients {
    pub fn new(allow: Vec<Cidr>) -> Self {
        Self {
            clients: Mutex::default(),
            allow: Arc::new(allow),
        }
    }

    fn client(&self, connect_timeout: Duration) -> Result<reqwest::Client, Failure> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&connect_timeout.as_millis()) {
            return Ok(c.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(256)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .dns_resolver(Arc::new(GuardedResolver {
                allow: self.allow.clone(),
            }))
            .build()
            .map_err(|e| Failure {
                kind: TransportError::Request,
                message: chain(&e),
            })?;
        clients.insert(connect_timeout.as_millis(), client.clone());
        Ok(client)
    }

    /// Sends one request; the whole exchange, body included, is bounded by `timeout`.
    pub async fn send(&self, request: Request<'_>, body_limit: usize) -> Result<Answer, Failure> {
        // An IP literal is never resolved: check it here.
        if let Some(ip) = host_ip(&request.url).filter(|ip| !may_connect(*ip, &self.allow)) {
            return Err(Failure {
                kind: TransportError::BlockedAddress,
                message: format!("blocked address: {ip}"),
            });
        }
        let client = self.client(request.connect_timeout)?;
        let method =
            reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|_| Failure {
                kind: TransportError::Request,
                message: format!("bad method {}", request.method),
            })?;
        let mut builder = client.request(method, request.url).body(request.body);
        for (name, value) in request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let exchange = async {
            let mut response = builder.send().await.map_err(|e| failure(&e))?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .take(64)
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = Vec::new();
            while body.len() < body_limit {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        let room = body_limit - body.len();
                        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                    // The status decides the outcome; a body cut short changes nothing.
                    Ok(None) | Err(_) => break,
                }
            }
            Ok(Answer {
                status,
                headers,
                body,
            })
        };
        match tokio::time::timeout(request.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Failure {
                kind: TransportError::Timeout,
                message: format!("no complete answer within {:?}", request.timeout),
            }),
        }
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn failure(e: &reqwest::Error) -> Failure {
    let message = chain(e);
    let lower = message.to_ascii_lowercase();
    let kind = if lower.contains("blocked address") {
        TransportError::BlockedAddress
    } else if e.is_timeout() {
        TransportError::Timeout
    } else if lower.contains("dns error") || lower.contains("failed to lookup") {
        TransportError::Dns
    } else if lower.contains("certificate") || lower.contains("tls") {
        TransportError::Tls
    } else if e.is_connect() {
        TransportError::Connect
    } else if e.is_body() || e.is_decode() {
        TransportError::Body
    } else {
        TransportError::Request
    };
    Failure { kind, message }
}
