//! A small HTTP/1.1 client (hyper over tokio-rustls) for `portier status`
//! and the tests: one request per connection, bounded in time, TLS trust
//! by pinned fingerprint or CA file (see [`super::tls::Trust`]).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Why a request to the admin port got no usable answer. The texts are
/// what `portier status` prints and the tests read.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The base URL is not `http(s)://HOST[:PORT]`.
    #[error("URL {0:?}: expected https://HOST[:PORT]")]
    BadUrl(String),
    /// The trust for `https://` is unusable (bad fingerprint, CA file).
    #[error(transparent)]
    Trust(#[from] super::tls::TrustError),
    /// No TCP connection (refused, unreachable, name unknown).
    #[error("connecting to {authority}: {source}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `https://` asked for without a TLS configuration.
    #[error("https needs a TLS configuration")]
    NoTls,
    /// The host is no name a certificate can be checked against.
    #[error("{host}: {source}")]
    ServerName {
        /// The URL's host.
        host: String,
        /// Cause.
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// The TLS handshake failed: often the pinned fingerprint or CA does
    /// not match the server's certificate.
    #[error("TLS with {authority}: {source}")]
    Tls {
        /// `host:port`.
        authority: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The whole request took longer than the client's time limit.
    #[error("{method} {path}: no answer within {timeout:?}")]
    Timeout {
        /// Method.
        method: String,
        /// Path and query.
        path: String,
        /// The limit.
        timeout: Duration,
    },
    /// The HTTP/1.1 connection could not be set up.
    #[error("HTTP handshake: {0}")]
    Handshake(#[source] hyper::Error),
    /// The request could not be built (a bad header or path).
    #[error("building request: {0}")]
    Build(#[source] hyper::http::Error),
    /// Sending the request or reading the answer's head failed.
    #[error("{method} {path}: {source}")]
    Send {
        /// Method.
        method: String,
        /// Path and query.
        path: String,
        /// Cause.
        #[source]
        source: hyper::Error,
    },
    /// Reading the answer's body failed.
    #[error("{method} {path}: reading body: {source}")]
    Body {
        /// Method.
        method: String,
        /// Path and query.
        path: String,
        /// Cause.
        #[source]
        source: hyper::Error,
    },
    /// A non-2xx answer to a JSON GET, with the server's message.
    #[error("GET {path}: HTTP {status}: {message}")]
    Status {
        /// Path and query.
        path: String,
        /// HTTP status.
        status: u16,
        /// The answer's body, trimmed.
        message: String,
    },
    /// A 2xx answer whose body is not the JSON expected.
    #[error("GET {path}: {source}")]
    Decode {
        /// Path and query.
        path: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// `GET /login` answered without the login form's CSRF field.
    #[error("no login form")]
    NoLoginForm,
    /// `GET /login` answered without the login cookie.
    #[error("no login cookie")]
    NoLoginCookie,
    /// The login form could not be encoded.
    #[error("{0}")]
    Form(#[source] serde_urlencoded::ser::Error),
    /// The login was answered without a session: the page's message, or
    /// the HTTP status.
    #[error("login refused: {0}")]
    LoginRefused(String),
}

/// A parsed `http://` or `https://` base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `https`.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl BaseUrl {
    /// Parse `https://host[:port][/]` (a path is not allowed).
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = || ClientError::BadUrl(url.to_owned());
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') {
            return Err(bad());
        }
        let default = if tls { 443 } else { 80 };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => default,
                None => return Err(bad()),
            };
            (h.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
                None => (rest.to_owned(), default),
            }
        };
        Ok(Self { tls, host, port })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A response, body read whole.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names), in order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All headers with this (lower-case) name.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Connect, from `source` when given (a loopback test can stand for
/// several client addresses: all of 127.0.0.0/8 is local).
async fn connect(base: &BaseUrl, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect((base.host.as_str(), base.port)).await;
    };
    let to = tokio::net::lookup_host((base.host.as_str(), base.port))
        .await?
        .find(|a| a.is_ipv4() == source.is_ipv4())
        .ok_or_else(|| std::io::Error::other("no address of the source's family"))?;
    let socket = if source.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(std::net::SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// Send one request. `tls` is needed for `https://`.
pub async fn request(
    base: &BaseUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<HttpResponse, ClientError> {
    let to = Target {
        base,
        tls,
        source: None,
    };
    request_from(to, method, path_and_query, headers, body, timeout).await
}

/// Where a request goes, and from which local address.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The server.
    pub base: &'a BaseUrl,
    /// Needed for `https://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Local address to connect from (`None`: the system's choice).
    pub source: Option<std::net::IpAddr>,
}

/// [`request`] from a chosen local address.
pub async fn request_from(
    to: Target<'_>,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<HttpResponse, ClientError> {
    let Target { base, tls, source } = to;
    tokio::time::timeout(timeout, async {
        let tcp = connect(base, source)
            .await
            .map_err(|source| ClientError::Connect {
                authority: base.authority(),
                source,
            })?;
        if base.tls {
            let cfg = tls.ok_or(ClientError::NoTls)?;
            let name =
                rustls::pki_types::ServerName::try_from(base.host.clone()).map_err(|source| {
                    ClientError::ServerName {
                        host: base.host.clone(),
                        source,
                    }
                })?;
            let stream = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|source| ClientError::Tls {
                    authority: base.authority(),
                    source,
                })?;
            send(stream, base, method, path_and_query, headers, body).await
        } else {
            send(tcp, base, method, path_and_query, headers, body).await
        }
    })
    .await
    .map_err(|_| ClientError::Timeout {
        method: method.to_owned(),
        path: path_and_query.to_owned(),
        timeout,
    })?
}

async fn send<S>(
    stream: S,
    base: &BaseUrl,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<HttpResponse, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ClientError::Handshake)?;
    let conn = tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", base.authority())
        .header("connection", "close");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(ClientError::Build)?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|source| ClientError::Send {
            method: method.to_owned(),
            path: path.to_owned(),
            source,
        })?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|source| ClientError::Body {
            method: method.to_owned(),
            path: path.to_owned(),
            source,
        })?
        .to_bytes()
        .to_vec();
    conn.abort();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// How the client authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer`.
    Token(String),
    /// A session cookie (after [`AdminClient::login`]) and its CSRF token.
    Session {
        /// `__Host-portier_session=…`.
        cookie: String,
        /// The session's CSRF token, read from the status page.
        csrf: Option<String>,
    },
    /// None (only `/healthz` and the login form answer).
    Anonymous,
}

/// A client of one admin port.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: BaseUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// How requests are authenticated.
    pub auth: Auth,
    /// Per-request time limit.
    pub timeout: Duration,
    /// Local address to connect from (`None`: the system's choice).
    pub source: Option<std::net::IpAddr>,
}

/// The value of a hidden `name="…"` input in a page we rendered.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// The `name=value` part of a `Set-Cookie` header for this cookie name.
pub fn set_cookie_value<'a>(resp: &'a HttpResponse, name: &str) -> Option<&'a str> {
    resp.headers_named("set-cookie")
        .map(|c| c.split(';').next().unwrap_or(""))
        .find(|kv| kv.starts_with(&format!("{name}=")) && kv.len() > name.len() + 1)
}

impl AdminClient {
    /// A client for `url` trusting as told.
    pub fn new(url: &str, trust: &super::tls::Trust, auth: Auth) -> Result<Self, ClientError> {
        let base = BaseUrl::parse(url)?;
        let tls = if base.tls {
            Some(super::tls::client_config(trust)?)
        } else {
            None
        };
        Ok(Self {
            base,
            tls,
            auth,
            timeout: Duration::from_secs(10),
            source: None,
        })
    }

    /// Send a request with this client's authentication.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<HttpResponse, ClientError> {
        let auth_header;
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        match &self.auth {
            Auth::Token(t) => {
                auth_header = format!("Bearer {t}");
                headers.push(("authorization", &auth_header));
            }
            Auth::Session { cookie, csrf } => {
                headers.push(("cookie", cookie));
                if let Some(c) = csrf {
                    headers.push(("x-csrf-token", c));
                }
            }
            Auth::Anonymous => {}
        }
        let to = Target {
            base: &self.base,
            tls: self.tls.clone(),
            source: self.source,
        };
        request_from(to, method, path, &headers, body, self.timeout).await
    }

    /// GET a JSON document; non-2xx answers become errors with the server's
    /// message.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        let r = self.send("GET", path, &[], Vec::new()).await?;
        if !(200..300).contains(&r.status) {
            return Err(ClientError::Status {
                path: path.to_owned(),
                status: r.status,
                message: r.text().trim().to_owned(),
            });
        }
        serde_json::from_slice(&r.body).map_err(|source| ClientError::Decode {
            path: path.to_owned(),
            source,
        })
    }

    /// Log in through the login form (as a browser does); on success the
    /// client carries the session cookie and its CSRF token.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        self.auth = Auth::Anonymous;
        let form = self.send("GET", "/login", &[], Vec::new()).await?;
        let csrf = hidden_field(&form.text(), "csrf").ok_or(ClientError::NoLoginForm)?;
        let login_cookie =
            set_cookie_value(&form, "__Host-portier_login").ok_or(ClientError::NoLoginCookie)?;
        let body = serde_urlencoded::to_string([
            ("user", user),
            ("password", password),
            ("csrf", csrf.as_str()),
        ])
        .map_err(ClientError::Form)?;
        let r = self
            .send(
                "POST",
                "/login",
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("cookie", login_cookie),
                ],
                body.into_bytes(),
            )
            .await?;
        let Some(session) = set_cookie_value(&r, "__Host-portier_session") else {
            let msg = hidden_error(&r.text()).unwrap_or_else(|| format!("HTTP {}", r.status));
            return Err(ClientError::LoginRefused(msg));
        };
        let session = session.to_owned();
        self.auth = Auth::Session {
            cookie: session,
            csrf: None,
        };
        let page = self.send("GET", "/", &[], Vec::new()).await?;
        let csrf = hidden_field(&page.text(), "csrf");
        if let Auth::Session { csrf: c, .. } = &mut self.auth {
            *c = csrf;
        }
        Ok(())
    }
}

fn hidden_error(html: &str) -> Option<String> {
    let start = html.find("id=\"login-error\">")? + "id=\"login-error\">".len();
    let end = html[start..].find('<')? + start;
    Some(html[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            BaseUrl::parse("https://127.0.0.1:8443/").unwrap(),
            BaseUrl {
                tls: true,
                host: "127.0.0.1".into(),
                port: 8443
            }
        );
        assert_eq!(BaseUrl::parse("https://gw.example").unwrap().port, 443);
        assert_eq!(BaseUrl::parse("http://[::1]:9515").unwrap().host, "::1");
        assert_eq!(
            BaseUrl::parse("http://[::1]:9515").unwrap().authority(),
            "[::1]:9515"
        );
        for bad in ["ftp://x", "https://", "https://h/path", "https://h:x"] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn form_scraping() {
        let html = r#"<input type="hidden" name="csrf" value="abc123"><p class="bad" id="login-error">Wrong.</p>"#;
        assert_eq!(hidden_field(html, "csrf").as_deref(), Some("abc123"));
        assert_eq!(hidden_field(html, "x"), None);
        assert_eq!(hidden_error(html).as_deref(), Some("Wrong."));
    }
}
