//! The outbound HTTP leg: hyper's pooled client, one per connect timeout in use
//! (connect timeouts are set per connector; endpoints rarely differ, so a handful
//! of pools serve everyone), TLS by rustls with the web PKI's roots, no redirects
//! followed, response bodies read up to a bound. hyper directly rather than a
//! higher-level client: herald sends one request per try and needs none of the
//! redirect and retry layers (a profile of scenario (a) put reqwest's own frames at
//! ~8 % of herald's CPU).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use herald_core::network::{host_ip, may_connect, Cidr};
use herald_core::outcome::TransportError;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

type Pool = Client<hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;

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
#[derive(Clone)]
struct GuardedResolver {
    allow: Arc<Vec<Cidr>>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str();
            let usable: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
                .await?
                .filter(|a| may_connect(a.ip(), &allow))
                .collect();
            if usable.is_empty() {
                return Err(std::io::Error::other(format!(
                    "blocked address: {host} resolves only to addresses herald may not connect to"
                )));
            }
            Ok(usable.into_iter())
        })
    }
}

pub(crate) struct HttpClients {
    clients: Mutex<HashMap<u128, Pool>>,
    /// Networks the SSRF guard lets through.
    allow: Arc<Vec<Cidr>>,
    tls: rustls::ClientConfig,
}

impl HttpClients {
    pub fn new(allow: Vec<Cidr>) -> Self {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports rustls' default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            clients: Mutex::default(),
            allow: Arc::new(allow),
            tls,
        }
    }

    fn client(&self, connect_timeout: Duration) -> Pool {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(connect_timeout.as_millis())
            .or_insert_with(|| {
                let mut http = HttpConnector::new_with_resolver(GuardedResolver {
                    allow: self.allow.clone(),
                });
                http.enforce_http(false);
                http.set_connect_timeout(Some(connect_timeout));
                http.set_nodelay(true);
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(self.tls.clone())
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http);
                Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(256)
                    .pool_idle_timeout(Duration::from_secs(60))
                    .pool_timer(TokioTimer::new())
                    .build(https)
            })
            .clone()
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
        let client = self.client(request.connect_timeout);
        let bad = |message: String| Failure {
            kind: TransportError::Request,
            message,
        };
        let method = http::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| bad(format!("bad method {}", request.method)))?;
        let mut builder = http::Request::builder()
            .method(method)
            .uri(request.url.as_str());
        for (name, value) in request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let outgoing = builder
            .body(Full::new(request.body))
            .map_err(|e| bad(chain(&e)))?;
        let exchange = async {
            let response = client.request(outgoing).await.map_err(|e| failure(&e))?;
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
            let mut incoming = response.into_body();
            let mut body = Vec::new();
            while body.len() < body_limit {
                match incoming.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(chunk) = frame.data_ref() {
                            let room = body_limit - body.len();
                            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        }
                    }
                    // The status decides the outcome; a body cut short changes nothing.
                    Some(Err(_)) | None => break,
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

fn failure(e: &hyper_util::client::legacy::Error) -> Failure {
    let message = chain(e);
    let lower = message.to_ascii_lowercase();
    let kind = if lower.contains("blocked address") {
        TransportError::BlockedAddress
    } else if lower.contains("dns error") || lower.contains("failed to lookup") {
        TransportError::Dns
    } else if lower.contains("timed out") {
        TransportError::Timeout
    } else if lower.contains("certificate") || lower.contains("tls") {
        TransportError::Tls
    } else if e.is_connect() {
        TransportError::Connect
    } else {
        TransportError::Request
    };
    Failure { kind, message }
}
