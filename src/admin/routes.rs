//! The router and its handlers: authentication, role and CSRF checks, and
//! the mapping of backend answers to HTML pages or JSON.
//!
//! Authentication is a type: a handler gets a [`Viewer`] or an
//! [`Operator`] extractor as its first argument, built from the request's
//! headers and peer address only (`FromRequestParts`). axum runs it before
//! any extractor that reads the query or body, and a handler cannot be
//! written to see either without it, so an anonymous request gets 401
//! (API) or a redirect to the login form (pages), never a parse error, and
//! a viewer's door action is refused before its body is read. The only
//! handlers without one are `/healthz` and the login form. The router is
//! built from [`ROUTES`], the same table `docs/openapi.json` is checked
//! against.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use std::marker::PhantomData;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::auth::{Directory, Lockout, Login, PasswordCheck, Role, Sessions, UsersFile};
use super::backend::{
    AdminBackend, BackendError, DoorActionRequest, DoorCommand, OverrideChoice, PassageDirection,
    WhyAnswer, WhyQuery, parse_card_text,
};
use super::failed_logins::FailedLogins;
use super::page::{self, Viewer as PageView, WhyView};
use super::password_checks::PasswordChecks;
use super::{AdminConfig, AdminError, Metrics, read_users_file};
use crate::event::EventKind;

/// One route of the admin port: method, path (axum syntax) and handler.
/// The router is built from [`ROUTES`] alone, so what is documented
/// (`docs/openapi.json`, checked by a test) is what is served, with the
/// method the table names.
pub struct Route {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Path in axum syntax, e.g. `/api/v1/doors/{id}/unlock`.
    pub path: &'static str,
    /// The handler for a method filter (the one `method` names).
    handler: fn(MethodFilter) -> MethodRouter<Arc<AppState>>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

impl Route {
    fn filter(&self) -> MethodFilter {
        match self.method {
            "POST" => MethodFilter::POST,
            _ => MethodFilter::GET,
        }
    }
}

macro_rules! route {
    ($method:literal, $path:literal, $handler:ident) => {
        Route {
            method: $method,
            path: $path,
            handler: |m| on(m, $handler),
        }
    };
}

/// Every route. `docs/openapi.json` documents exactly these (a test
/// checks), and [`router`] serves exactly these.
pub const ROUTES: &[Route] = &[
    route!("GET", "/healthz", healthz),
    route!("GET", "/login", login_form),
    route!("POST", "/login", login_submit),
    route!("POST", "/logout", logout),
    route!("GET", "/", index),
    route!("GET", "/live", live),
    route!("GET", "/confirm", confirm),
    route!("POST", "/doors/{id}/unlock", form_unlock),
    route!("POST", "/doors/{id}/override", form_override),
    route!("POST", "/doors/{id}/release", form_release),
    route!("POST", "/time/confirm", form_confirm_time),
    route!("GET", "/api/v1/status", api_status),
    route!("GET", "/api/v1/events", api_events),
    route!("GET", "/api/v1/occupancy", api_occupancy),
    route!("GET", "/api/v1/why", api_why),
    route!("POST", "/api/v1/doors/{id}/unlock", api_unlock),
    route!("POST", "/api/v1/doors/{id}/mode", api_mode),
    route!("POST", "/api/v1/doors/{id}/release", api_release),
    route!("POST", "/api/v1/time/confirm", api_confirm_time),
    route!("GET", "/metrics", metrics),
];

const SESSION_COOKIE: &str = "__Host-portier_session";
const LOGIN_COOKIE: &str = "__Host-portier_login";

/// Users from the config plus the users file, re-read when the file
/// changes (so `portier admin passwd` needs no restart).
struct UserStore {
    inline: UsersFile,
    file: Option<PathBuf>,
    cache: Mutex<(Stamp, Arc<Directory>)>,
}

/// Modification time, length and inode of the users file, when it exists
/// (the CLI replaces it by rename: a new inode even within one mtime tick).
type Stamp = Option<(SystemTime, u64, u64)>;

impl UserStore {
    fn new(cfg: &AdminConfig) -> Result<Self, AdminError> {
        let inline = UsersFile {
            users: cfg.users.clone(),
            tokens: cfg.tokens.clone(),
        };
        let store = Self {
            inline,
            file: cfg.users_file.clone(),
            cache: Mutex::new((None, Arc::new(Directory::default()))),
        };
        // Fail at start on a broken file; later a broken file keeps the
        // last good directory.
        let from_file = match &store.file {
            Some(f) => read_users_file(f)?,
            None => UsersFile::default(),
        };
        let stamp = store.file.as_deref().and_then(file_stamp);
        *lock(&store.cache) = (stamp, Arc::new(store.build(&from_file)));
        Ok(store)
    }

    fn build(&self, from_file: &UsersFile) -> Directory {
        let mut salt = [0u8; 16];
        crate::clock::os_entropy(&mut salt);
        Directory::new(&[&self.inline, from_file], &salt)
    }

    fn directory(&self) -> Arc<Directory> {
        let Some(file) = &self.file else {
            return lock(&self.cache).1.clone();
        };
        let stamp = file_stamp(file);
        {
            let c = lock(&self.cache);
            if c.0 == stamp {
                return c.1.clone();
            }
        }
        match read_users_file(file) {
            Ok(f) => {
                let d = Arc::new(self.build(&f));
                *lock(&self.cache) = (stamp, d.clone());
                tracing::info!(file = %file.display(), users = d.user_count(), tokens = d.token_count(), "admin users reloaded");
                d
            }
            Err(e) => {
                tracing::error!("{e}; keeping the users loaded before");
                lock(&self.cache).1.clone()
            }
        }
    }
}

fn file_stamp(p: &std::path::Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// A poisoned lock only means another handler panicked; the data (sessions,
/// counters) is still consistent enough to go on.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct AuthState {
    lockout: Lockout,
    sessions: Sessions,
    failed: FailedLogins,
}

/// Shared state of all handlers.
pub(crate) struct AppState {
    backend: Arc<dyn AdminBackend>,
    metrics: Metrics,
    users: UserStore,
    auth: Mutex<AuthState>,
    /// Password checks, one at a time on their own thread (argon2 costs
    /// 19 MiB and tens of milliseconds each; a flood of logins must not
    /// exhaust the gateway).
    checks: PasswordChecks,
}

impl AppState {
    pub(crate) fn new(
        cfg: &AdminConfig,
        backend: Arc<dyn AdminBackend>,
        metrics: Metrics,
    ) -> Result<Self, AdminError> {
        Ok(Self {
            backend,
            metrics,
            users: UserStore::new(cfg)?,
            auth: Mutex::new(AuthState {
                lockout: Lockout::new(cfg.lockout),
                sessions: Sessions::new(cfg.session),
                failed: FailedLogins::default(),
            }),
            checks: PasswordChecks::start().map_err(|source| AdminError::Io {
                addr: cfg.listen,
                source,
            })?,
        })
    }

    /// Journal the failed logins summed over the minute that ends now
    /// (the admin server calls this once a minute and at shutdown).
    pub(crate) async fn end_failed_login_minute(&self) {
        let sums = lock(&self.auth).failed.end_minute();
        for e in sums {
            self.record(e).await;
        }
    }

    /// Count a failed login; journal it if it is its client's first this
    /// minute.
    async fn login_failed(&self, client: IpAddr, user: &str, refused: bool) {
        let first = lock(&self.auth)
            .failed
            .failed(client, user, refused, wall_now());
        if let Some(e) = first {
            self.record(e).await;
        }
    }

    pub(crate) fn user_count(&self) -> usize {
        self.users.directory().user_count()
    }

    async fn record(&self, event: EventKind) {
        if let Err(e) = self.backend.record(event.clone()).await {
            tracing::error!(?event, "admin event not journaled: {e}");
        }
    }
}

/// Monotonic now: the admin driver's clock read point for lockout and
/// sessions.
fn mono_now() -> Instant {
    crate::clock::monotonic()
}

/// Wall-clock now, for "why" and door actions.
fn wall_now() -> Timestamp {
    let d = crate::clock::since_epoch();
    Timestamp::new(
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        i32::try_from(d.subsec_nanos()).unwrap_or(0),
    )
    .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    crate::clock::os_entropy(&mut b);
    hex::encode(b)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// How a request is authenticated.
#[derive(Debug, Clone)]
enum Via {
    /// Session cookie; POSTs need this CSRF token.
    Session { csrf: String },
    /// `Authorization: Bearer`.
    Token,
}

#[derive(Debug, Clone)]
pub(crate) struct Caller {
    name: String,
    role: Role,
    via: Via,
    client: IpAddr,
}

impl Caller {
    fn viewer(&self) -> PageView {
        PageView {
            name: self.name.clone(),
            operator: self.role == Role::Operator,
            csrf: match &self.via {
                Via::Session { csrf } => csrf.clone(),
                Via::Token => String::new(),
            },
        }
    }
}

impl AppState {
    fn caller(&self, headers: &HeaderMap, peer: SocketAddr) -> Option<Caller> {
        let dir = self.users.directory();
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            let token = auth.to_str().ok()?.strip_prefix("Bearer ")?.trim();
            let (name, role) = dir.check_token(token)?;
            return Some(Caller {
                name,
                role,
                via: Via::Token,
                client: peer.ip(),
            });
        }
        let c = cookie(headers, SESSION_COOKIE)?;
        let mut auth = lock(&self.auth);
        let s = auth.sessions.touch(&c, mono_now())?;
        // Checked against the users file as it is now: a removed user's
        // sessions end, so do the sessions opened with a password that has
        // since changed (also by the CLI while we run); a demoted operator
        // cannot act.
        let role = match dir.credential_of(&s.user) {
            Some((role, credential)) if credential == s.credential => role,
            _ => {
                auth.sessions.remove(&c);
                return None;
            }
        };
        Some(Caller {
            name: s.user,
            role,
            via: Via::Session { csrf: s.csrf },
            client: peer.ip(),
        })
    }
}

/// Where a request came in: the JSON API or the HTML pages. Says how a
/// refusal looks.
pub(crate) trait Surface: Send + Sync + 'static {
    /// No (valid) session or token.
    fn not_logged_in() -> Response;
    /// Logged in, but the viewer role may not act.
    fn forbidden(caller: &Caller) -> Response;
}

/// The JSON API (and `/metrics`): 401 with `WWW-Authenticate`, 403 JSON.
pub(crate) enum Api {}

/// The HTML pages: a redirect to the login form, a 403 page.
pub(crate) enum Page {}

impl Surface for Api {
    fn not_logged_in() -> Response {
        let mut r = api_error(
            StatusCode::UNAUTHORIZED,
            "log in (session cookie) or send Authorization: Bearer <token>",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"portier\""),
        );
        r
    }

    fn forbidden(_: &Caller) -> Response {
        api_error(StatusCode::FORBIDDEN, "door actions need the operator role")
    }
}

impl Surface for Page {
    fn not_logged_in() -> Response {
        redirect("/login")
    }

    fn forbidden(caller: &Caller) -> Response {
        page_message(
            Some(&caller.viewer()),
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Door actions need the operator role.",
        )
    }
}

/// A logged-in caller (any role), known from the request's headers and
/// peer address before anything else of the request is read.
pub(crate) struct Viewer<S: Surface>(Caller, PhantomData<S>);

/// A logged-in caller with the operator role. A viewer's POST is refused
/// (and journaled as a forbidden door action) before its body is read.
pub(crate) struct Operator<S: Surface>(Caller, PhantomData<S>);

impl<S: Surface> FromRequestParts<Arc<AppState>> for Viewer<S> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, Response> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .ok_or_else(S::not_logged_in)?;
        st.caller(&parts.headers, peer)
            .map(|c| Self(c, PhantomData))
            .ok_or_else(S::not_logged_in)
    }
}

impl<S: Surface> FromRequestParts<Arc<AppState>> for Operator<S> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, Response> {
        let Viewer(caller, _) = Viewer::<S>::from_request_parts(parts, st).await?;
        if caller.role == Role::Operator {
            return Ok(Self(caller, PhantomData));
        }
        if parts.method == Method::POST {
            // `/doors/{id}/unlock`, `/api/v1/doors/{id}/mode`: door and
            // action from the path; the body is never read.
            let mut segments = parts.uri.path().rsplit('/');
            let action = segments.next().unwrap_or("").to_owned();
            let door = segments.next().unwrap_or("").to_owned();
            st.metrics.action("forbidden");
            st.record(EventKind::AdminAction {
                user: caller.name.clone(),
                client: caller.client.to_string(),
                door,
                action,
                result: "forbidden: viewer role".into(),
            })
            .await;
        }
        Err(S::forbidden(&caller))
    }
}

fn redirect(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

#[derive(Serialize)]
struct ApiError<'a> {
    error: &'a str,
}

fn api_error(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(ApiError { error: msg })).into_response()
}

fn backend_status(e: &BackendError) -> StatusCode {
    match e {
        BackendError::UnknownDoor(_) => StatusCode::NOT_FOUND,
        BackendError::Refused(_) => StatusCode::CONFLICT,
        BackendError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_SECURITY_POLICY, page::csp())],
        Html(body),
    )
        .into_response()
}

fn page_message(
    viewer: Option<&PageView>,
    status: StatusCode,
    title: &str,
    text: &str,
) -> Response {
    html(
        status,
        page::message(viewer, title, text, status.is_success()),
    )
}

/// Why a request's query, form or JSON body is refused before anything is
/// done. Every one is the caller's mistake ([`RoutesError::status`]: 400);
/// the text is what the page or the API answer shows.
#[derive(Debug, Error)]
enum RoutesError {
    /// The query string or the form body does not parse (an unknown
    /// choice, a number out of range, malformed encoding).
    #[error("{0}")]
    Form(#[source] serde_urlencoded::de::Error),
    /// A JSON body does not parse or has unknown fields.
    #[error("body: {0}")]
    Json(#[source] serde_json::Error),
    /// A door action without a field it needs; the text says which.
    #[error("{0}")]
    Missing(&'static str),
    /// A door action the admin port does not know.
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    /// The action is out of bounds ([`DoorCommand::check`]'s words).
    #[error(transparent)]
    OutOfBounds(#[from] super::backend::OutOfBounds),
}

impl RoutesError {
    /// The HTTP status of the answer: the request was wrong.
    fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

fn parse_query<T: serde::de::DeserializeOwned + Default>(
    q: Option<String>,
) -> Result<T, RoutesError> {
    match q {
        None => Ok(T::default()),
        Some(q) => serde_urlencoded::from_str(&q).map_err(RoutesError::Form),
    }
}

/// Build the router from [`ROUTES`].
pub(crate) fn router(state: Arc<AppState>) -> Router {
    ROUTES
        .iter()
        .fold(Router::new(), |r, route| {
            r.route(route.path, (route.handler)(route.filter()))
        })
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    resp
}

type St = State<Arc<AppState>>;
type Peer = ConnectInfo<SocketAddr>;

async fn not_found(State(st): St, ConnectInfo(peer): Peer, headers: HeaderMap) -> Response {
    // Unknown paths look the same as known ones to anonymous callers.
    match st.caller(&headers, peer) {
        None => api_error(StatusCode::UNAUTHORIZED, "not logged in"),
        Some(_) => api_error(StatusCode::NOT_FOUND, "no such page"),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

fn login_cookie_header(value: &str, max_age: u32) -> HeaderValue {
    // Built from hex digits only: always a valid header value.
    HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn login_form(State(st): St) -> Response {
    let token = random_hex(16);
    let mut r = html(
        StatusCode::OK,
        page::login(&token, None, st.user_count() == 0),
    );
    r.headers_mut()
        .append(header::SET_COOKIE, login_cookie_header(&token, 900));
    r
}

/// Longest user name a login may give, bytes.
const MAX_USER_NAME: usize = crate::text::NAME;
/// Longest password a login may give, bytes.
const MAX_PASSWORD: usize = 1024;
/// Largest request body the admin port reads (a login form or a door
/// action is a few hundred bytes), bytes.
pub(crate) const MAX_BODY: usize = 16 * 1024;
/// What a login refused for "busy" is told to wait, seconds.
const BUSY_RETRY_SECS: u64 = 2;

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
    csrf: String,
}

async fn login_submit(
    State(st): St,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let again = |st: &AppState, status: StatusCode, msg: &str| {
        let token = random_hex(16);
        let mut r = html(status, page::login(&token, Some(msg), st.user_count() == 0));
        r.headers_mut()
            .append(header::SET_COOKIE, login_cookie_header(&token, 900));
        r
    };
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return again(
            &st,
            StatusCode::BAD_REQUEST,
            "Fill in user name and password.",
        );
    };
    // Login CSRF: the form must come from our own login page (double
    // submit: the hidden field equals the cookie set with the form).
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !super::auth::constant_time_eq(&expected, &form.csrf) {
        return again(
            &st,
            StatusCode::FORBIDDEN,
            "The login form had expired; please try again.",
        );
    }
    let client = peer.ip();
    let user = form.user.trim();
    // Names and passwords have a size (docs/admin.md); a longer one cannot
    // be right and is not worth a check.
    if user.len() > MAX_USER_NAME || form.password.len() > MAX_PASSWORD {
        st.metrics.login("failed");
        st.login_failed(client, user, true).await;
        return again(&st, StatusCode::BAD_REQUEST, "Wrong user name or password.");
    }
    let user = user.to_owned();
    let Some(admitted) = st.checks.admit() else {
        st.metrics.login("busy");
        st.login_failed(client, &user, true).await;
        let mut r = again(
            &st,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many logins at once; please try again in a few seconds.",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(BUSY_RETRY_SECS));
        return r;
    };
    // The back-off is checked in this login's turn, so that guesses sent
    // all at once are counted one after the other and those beyond the
    // limit are refused unchecked.
    let turn = st.checks.turn(&admitted).await;
    let now = mono_now();
    let locked = lock(&st.auth).lockout.locked(&user, client, now);
    if let Some(until) = locked {
        drop(turn);
        st.metrics.login("locked_out");
        st.login_failed(client, &user, true).await;
        let wait = until.saturating_duration_since(now).as_secs() + 1;
        let mut r = again(
            &st,
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed logins from this address: locked, try again in {wait} s."),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return r;
    }
    let dir = st.users.directory();
    let check = st
        .checks
        .check(&turn, dir, user.clone(), form.password)
        .await;
    drop(turn);
    match check {
        PasswordCheck::Ok(role, credential) => {
            let cookie_value = random_hex(32);
            let csrf = random_hex(16);
            {
                let mut a = lock(&st.auth);
                a.lockout.succeeded(&user, client);
                let login = Login {
                    user: &user,
                    role,
                    credential,
                };
                a.sessions.create(&cookie_value, csrf, login, mono_now());
            }
            st.metrics.login("ok");
            st.record(EventKind::AdminLogin {
                user,
                client: client.to_string(),
                result: crate::event::LoginResult::Ok,
            })
            .await;
            let mut r = redirect("/");
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{SESSION_COOKIE}={cookie_value}; Path=/; Secure; HttpOnly; SameSite=Strict"
            )) {
                h.append(header::SET_COOKIE, v);
            }
            h.append(header::SET_COOKIE, login_cookie_header("", 0));
            r
        }
        PasswordCheck::Wrong => {
            let now_locked = lock(&st.auth).lockout.failed(&user, client, mono_now());
            st.metrics.login("failed");
            st.login_failed(client, &user, false).await;
            let msg = if now_locked {
                "Wrong user name or password. Too many failures: the next try must wait."
            } else {
                "Wrong user name or password."
            };
            again(&st, StatusCode::UNAUTHORIZED, msg)
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Check a form's CSRF token against the session's. Token callers have no
/// ambient credential and need none.
fn csrf_ok(caller: &Caller, token: &str) -> bool {
    match &caller.via {
        Via::Session { csrf } => super::auth::constant_time_eq(csrf, token),
        Via::Token => true,
    }
}

async fn logout(
    Viewer(caller, _): Viewer<Page>,
    State(st): St,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: CsrfForm = serde_urlencoded::from_bytes(&body).unwrap_or(CsrfForm {
        csrf: String::new(),
    });
    if !csrf_ok(&caller, &form.csrf) {
        return page_message(
            Some(&caller.viewer()),
            StatusCode::FORBIDDEN,
            "Refused",
            "The form was not sent by this page (CSRF check failed).",
        );
    }
    if let Some(c) = cookie(&headers, SESSION_COOKIE) {
        lock(&st.auth).sessions.remove(&c);
    }
    let mut r = redirect("/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-portier_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

#[derive(Deserialize, Default)]
struct WhyParams {
    door: Option<String>,
    card: Option<String>,
    at: Option<String>,
}

async fn run_why(
    st: &AppState,
    p: &WhyParams,
) -> Option<Result<(String, String, WhyAnswer), (String, String, String)>> {
    let door = p.door.clone().unwrap_or_default();
    let text = p.card.clone().unwrap_or_default();
    if door.trim().is_empty() && text.trim().is_empty() {
        return None;
    }
    let at = match p.at.as_deref().filter(|a| !a.trim().is_empty()) {
        None => wall_now(),
        Some(a) => match a.trim().parse::<Timestamp>() {
            Ok(t) => t,
            Err(_) => {
                return Some(Err((
                    door,
                    text,
                    "time must be RFC 3339, e.g. 2026-11-23T21:30:00+01:00".into(),
                )));
            }
        },
    };
    let card = match parse_card_text(&text) {
        Ok(c) => c,
        Err(e) => return Some(Err((door, text, e.to_string()))),
    };
    let q = WhyQuery {
        door: door.trim().to_owned(),
        card,
        at,
    };
    Some(match st.backend.why(q).await {
        Ok(a) => Ok((door, text, a)),
        Err(e) => Err((door, text, e.to_string())),
    })
}

async fn index(Viewer(caller, _): Viewer<Page>, State(st): St, RawQuery(q): RawQuery) -> Response {
    let params: WhyParams = parse_query(q).unwrap_or_default();
    let why = run_why(&st, &params).await.map(|r| match r {
        Ok((door, card, answer)) => WhyView::Answer { door, card, answer },
        Err((door, card, message)) => WhyView::Error {
            door,
            card,
            message,
        },
    });
    match st.backend.status().await {
        Ok(s) => html(
            StatusCode::OK,
            page::index(&s, &caller.viewer(), why.as_ref()),
        ),
        Err(e) => page_message(
            Some(&caller.viewer()),
            backend_status(&e),
            "Status unavailable",
            &e.to_string(),
        ),
    }
}

async fn live(_: Viewer<Page>, State(st): St) -> Response {
    match st.backend.status().await {
        Ok(s) => html(StatusCode::OK, page::live(&s)),
        Err(e) => html(backend_status(&e), page::escape(&e.to_string())),
    }
}

#[derive(Deserialize, Default)]
struct ActionParams {
    door: Option<String>,
    action: Option<String>,
    seconds: Option<u32>,
    minutes: Option<u32>,
    state: Option<OverrideChoice>,
    direction: Option<PassageDirection>,
    #[serde(default)]
    csrf: String,
}

fn command_of(kind: &str, p: &ActionParams) -> Result<DoorCommand, RoutesError> {
    let missing = RoutesError::Missing;
    let cmd = match kind {
        "unlock" => DoorCommand::Unlock {
            seconds: p
                .seconds
                .ok_or(missing("give the unlock time in seconds"))?,
        },
        "override" => DoorCommand::Override {
            state: p.state.ok_or(missing("choose unlocked or locked"))?,
            minutes: p
                .minutes
                .ok_or(missing("give the override time in minutes"))?,
        },
        "release" => DoorCommand::ReleasePassage {
            direction: p
                .direction
                .ok_or(missing("choose the direction (in or out)"))?,
        },
        other => return Err(RoutesError::UnknownAction(other.to_owned())),
    };
    cmd.check().map_err(RoutesError::OutOfBounds)?;
    Ok(cmd)
}

fn action_path(cmd: &DoorCommand) -> &'static str {
    match cmd {
        DoorCommand::Unlock { .. } => "unlock",
        DoorCommand::Override { .. } => "override",
        DoorCommand::ReleasePassage { .. } => "release",
    }
}

/// The confirmation page of a door action (operators only; a viewer's
/// GET is refused but, not being an action, not journaled).
async fn confirm(Operator(caller, _): Operator<Page>, RawQuery(q): RawQuery) -> Response {
    let v = caller.viewer();
    let p: ActionParams = match parse_query(q) {
        Ok(p) => p,
        Err(e) => return page_message(Some(&v), e.status(), "Bad request", &e.to_string()),
    };
    let door = p.door.clone().unwrap_or_default();
    match command_of(p.action.as_deref().unwrap_or(""), &p) {
        Ok(cmd) if !door.is_empty() => html(
            StatusCode::OK,
            page::confirm(&v, &door, &cmd, action_path(&cmd)),
        ),
        Ok(_) => page_message(
            Some(&v),
            StatusCode::BAD_REQUEST,
            "Bad request",
            "choose a door",
        ),
        Err(e) => page_message(Some(&v), e.status(), "Bad request", &e.to_string()),
    }
}

/// Check CSRF, run the action, journal it (the caller is an operator). `Err` carries the
/// status and the operator-facing message.
async fn act(
    st: &AppState,
    caller: &Caller,
    door: String,
    cmd: Result<DoorCommand, RoutesError>,
    csrf: &str,
) -> Result<super::ActionOutcome, (StatusCode, String)> {
    let record = |door: &str, action: String, result: String| EventKind::AdminAction {
        user: caller.name.clone(),
        client: caller.client.to_string(),
        door: door.to_owned(),
        action,
        result,
    };
    // The role was checked by the `Operator` extractor.
    if !csrf_ok(caller, csrf) {
        st.metrics.action("forbidden");
        let what = cmd
            .as_ref()
            .map_or_else(RoutesError::to_string, DoorCommand::describe);
        st.record(record(&door, what, "forbidden: CSRF check failed".into()))
            .await;
        return Err((
            StatusCode::FORBIDDEN,
            "CSRF check failed: send the session's token (form field csrf or header X-CSRF-Token)"
                .into(),
        ));
    }
    let cmd = cmd.map_err(|e| (e.status(), e.to_string()))?;
    let what = cmd.describe();
    let req = DoorActionRequest {
        door: door.clone(),
        command: cmd,
        by: caller.name.clone(),
        at: wall_now(),
    };
    match st.backend.door_action(req).await {
        Ok(outcome) => {
            st.metrics.action("ok");
            st.record(record(&door, what, "ok".into())).await;
            Ok(outcome)
        }
        Err(e) => {
            st.metrics.action("refused");
            st.record(record(&door, what, e.to_string())).await;
            Err((backend_status(&e), e.to_string()))
        }
    }
}

async fn form_action(
    caller: Caller,
    st: Arc<AppState>,
    door: String,
    kind: &str,
    body: Bytes,
) -> Response {
    let v = caller.viewer();
    let (cmd, csrf) = match serde_urlencoded::from_bytes::<ActionParams>(&body) {
        Ok(p) => (command_of(kind, &p), p.csrf),
        Err(e) => (Err(RoutesError::Form(e)), String::new()),
    };
    match act(&st, &caller, door.clone(), cmd, &csrf).await {
        Ok(o) => page_message(
            Some(&v),
            StatusCode::OK,
            "Done",
            &format!("Door {}: {}", o.door, o.done),
        ),
        Err((status, msg)) => {
            page_message(Some(&v), status, "Not done", &format!("Door {door}: {msg}"))
        }
    }
}

async fn form_unlock(
    Operator(caller, _): Operator<Page>,
    State(st): St,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    form_action(caller, st, id, "unlock", body).await
}

async fn form_override(
    Operator(caller, _): Operator<Page>,
    State(st): St,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    form_action(caller, st, id, "override", body).await
}

async fn form_release(
    Operator(caller, _): Operator<Page>,
    State(st): St,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    form_action(caller, st, id, "release", body).await
}

async fn api_status(_: Viewer<Api>, State(st): St) -> Response {
    match st.backend.status().await {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => api_error(backend_status(&e), &e.to_string()),
    }
}

#[derive(Deserialize, Default)]
struct EventsParams {
    after: Option<u64>,
    limit: Option<usize>,
}

/// Most events one `/api/v1/events` call returns.
const MAX_EVENTS: usize = 1000;
/// Most JSON one `/api/v1/events` call returns, bytes: a page ends before
/// the event that would pass it (one event is always returned; the
/// journal caps each at 4 KiB, older journals may hold larger ones).
const MAX_EVENTS_BYTES: usize = 512 * 1024;

/// The longest prefix of `events` whose JSON fits in `budget` bytes, and
/// at least the first event, so that paging by `after` always moves on.
fn page_by_bytes(mut events: Vec<crate::event::Event>, budget: usize) -> Vec<crate::event::Event> {
    let mut used = 0;
    let keep = events
        .iter()
        .position(|e| {
            used += serde_json::to_vec(e).map_or(budget, |v| v.len() + 1);
            used > budget
        })
        .unwrap_or(events.len())
        .max(1);
    events.truncate(keep);
    events
}

#[derive(Serialize)]
struct EventsPage {
    events: Vec<crate::event::Event>,
}

async fn api_events(_: Viewer<Api>, State(st): St, RawQuery(q): RawQuery) -> Response {
    let p: EventsParams = match parse_query(q) {
        Ok(p) => p,
        Err(e) => return api_error(e.status(), &e.to_string()),
    };
    let limit = p.limit.unwrap_or(100).clamp(1, MAX_EVENTS);
    match st.backend.events(p.after.unwrap_or(0), limit).await {
        Ok(events) => axum::Json(EventsPage {
            events: page_by_bytes(events, MAX_EVENTS_BYTES),
        })
        .into_response(),
        Err(e) => api_error(backend_status(&e), &e.to_string()),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OccupancyParams {
    area: Option<String>,
}

async fn api_occupancy(_: Viewer<Api>, State(st): St, RawQuery(q): RawQuery) -> Response {
    let p: OccupancyParams = match parse_query(q) {
        Ok(p) => p,
        Err(e) => return api_error(e.status(), &e.to_string()),
    };
    let area = p.area.filter(|a| !a.is_empty());
    if area
        .as_ref()
        .is_some_and(|a| a.len() > crate::rules::areas::MAX_NAME)
    {
        return api_error(StatusCode::BAD_REQUEST, "area: at most 64 bytes");
    }
    match st.backend.occupancy(area).await {
        Ok(o) => axum::Json(o).into_response(),
        Err(e) => api_error(backend_status(&e), &e.to_string()),
    }
}

#[derive(Serialize)]
struct WhyReply {
    door: String,
    #[serde(flatten)]
    answer: WhyAnswer,
    reason_text: Option<String>,
}

async fn api_why(_: Viewer<Api>, State(st): St, RawQuery(q): RawQuery) -> Response {
    let p: WhyParams = match parse_query(q) {
        Ok(p) => p,
        Err(e) => return api_error(e.status(), &e.to_string()),
    };
    if p.door.as_deref().unwrap_or("").trim().is_empty() {
        return api_error(StatusCode::BAD_REQUEST, "give door and card");
    }
    match run_why(&st, &p).await {
        None => api_error(StatusCode::BAD_REQUEST, "give door and card"),
        Some(Ok((door, _, answer))) => {
            let reason_text = answer
                .detail
                .clone()
                .or_else(|| answer.reason.map(|r| r.words().to_owned()));
            axum::Json(WhyReply {
                door: door.trim().to_owned(),
                answer,
                reason_text,
            })
            .into_response()
        }
        Some(Err((_, _, msg))) => api_error(StatusCode::BAD_REQUEST, &msg),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnlockBody {
    seconds: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    state: OverrideChoice,
    minutes: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    direction: PassageDirection,
}

async fn api_action(
    caller: Caller,
    st: Arc<AppState>,
    headers: HeaderMap,
    door: String,
    cmd: impl FnOnce(&[u8]) -> Result<DoorCommand, RoutesError>,
    body: Bytes,
) -> Response {
    let csrf = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let cmd = cmd(&body).and_then(|c| c.check().map(|()| c).map_err(RoutesError::OutOfBounds));
    match act(&st, &caller, door, cmd, &csrf).await {
        Ok(o) => axum::Json(o).into_response(),
        Err((status, msg)) => api_error(status, &msg),
    }
}

fn json_body<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, RoutesError> {
    serde_json::from_slice(b).map_err(RoutesError::Json)
}

/// The page's form for [`api_confirm_time`].
async fn form_confirm_time(
    Operator(caller, _): Operator<Page>,
    State(st): St,
    body: Bytes,
) -> Response {
    let v = caller.viewer();
    let form: CsrfForm = serde_urlencoded::from_bytes(&body).unwrap_or(CsrfForm {
        csrf: String::new(),
    });
    if !csrf_ok(&caller, &form.csrf) {
        st.metrics.action("forbidden");
        return page_message(
            Some(&v),
            StatusCode::FORBIDDEN,
            "Refused",
            "The form was not sent by this page (CSRF check failed).",
        );
    }
    match st
        .backend
        .confirm_time(format!("admin:{}", caller.name))
        .await
    {
        Ok(()) => {
            st.metrics.action("ok");
            page_message(
                Some(&v),
                StatusCode::OK,
                "Done",
                "The gateway's time is confirmed.",
            )
        }
        Err(e) => page_message(Some(&v), backend_status(&e), "Not done", &e.to_string()),
    }
}

/// An operator vouches for the gateway's clock (the status shows whether
/// the time is confirmed, and what it is): journaled with who.
async fn api_confirm_time(
    Operator(caller, _): Operator<Api>,
    State(st): St,
    headers: HeaderMap,
) -> Response {
    let csrf = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !csrf_ok(&caller, csrf) {
        st.metrics.action("forbidden");
        return api_error(
            StatusCode::FORBIDDEN,
            "CSRF check failed: send X-CSRF-Token",
        );
    }
    match st
        .backend
        .confirm_time(format!("admin:{}", caller.name))
        .await
    {
        Ok(()) => {
            st.metrics.action("ok");
            axum::Json(serde_json::json!({"confirmed": true})).into_response()
        }
        Err(e) => api_error(backend_status(&e), &e.to_string()),
    }
}

async fn api_unlock(
    Operator(caller, _): Operator<Api>,
    State(st): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    api_action(
        caller,
        st,
        headers,
        id,
        |b| json_body::<UnlockBody>(b).map(|u| DoorCommand::Unlock { seconds: u.seconds }),
        body,
    )
    .await
}

async fn api_mode(
    Operator(caller, _): Operator<Api>,
    State(st): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    api_action(
        caller,
        st,
        headers,
        id,
        |b| {
            json_body::<ModeBody>(b).map(|m| DoorCommand::Override {
                state: m.state,
                minutes: m.minutes,
            })
        },
        body,
    )
    .await
}

async fn api_release(
    Operator(caller, _): Operator<Api>,
    State(st): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    api_action(
        caller,
        st,
        headers,
        id,
        |b| {
            json_body::<ReleaseBody>(b).map(|r| DoorCommand::ReleasePassage {
                direction: r.direction,
            })
        },
        body,
    )
    .await
}

async fn metrics(_: Viewer<Api>, State(st): St) -> Response {
    match st.backend.status().await {
        Ok(s) => st.metrics.observe_status(&s),
        Err(e) => tracing::warn!("metrics: status unavailable: {e}"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}

/// Fuzz entry: every parser of the text a request brings (login and
/// action forms, queries, JSON bodies, card text). Guarantee: arbitrary
/// bytes never panic.
pub fn fuzz_request_text(data: &[u8]) {
    let _ = serde_urlencoded::from_bytes::<LoginForm>(data);
    let _ = serde_urlencoded::from_bytes::<CsrfForm>(data);
    if let Ok(p) = serde_urlencoded::from_bytes::<ActionParams>(data) {
        for kind in ["unlock", "override", "release", "other"] {
            let _ = command_of(kind, &p);
        }
    }
    let text = String::from_utf8_lossy(data).into_owned();
    let _ = parse_query::<EventsParams>(Some(text.clone()));
    let _ = parse_query::<WhyParams>(Some(text.clone()));
    let _ = parse_query::<ActionParams>(Some(text.clone()));
    let _ = parse_card_text(&text);
    let _ =
        json_body::<UnlockBody>(data).map(|b| DoorCommand::Unlock { seconds: b.seconds }.check());
    let _ = json_body::<ModeBody>(data);
    let _ = json_body::<ReleaseBody>(data);
    let _ = crate::text::bounded(&text, crate::text::NAME);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn event(seq: u64, name_len: usize) -> Event {
        Event {
            seq,
            at: Timestamp::UNIX_EPOCH,
            kind: EventKind::AdminLogin {
                user: "x".repeat(name_len),
                client: "127.0.0.1".into(),
                result: crate::event::LoginResult::Ok,
            },
        }
    }

    #[test]
    fn an_events_page_is_bounded_in_bytes_and_always_moves_on() {
        let small: Vec<Event> = (1..=100).map(|s| event(s, 10)).collect();
        assert_eq!(page_by_bytes(small, MAX_EVENTS_BYTES).len(), 100);
        // Old journals may hold 2 MB names: a page stops before passing
        // the budget, and holds at least one event.
        let big: Vec<Event> = (1..=5).map(|s| event(s, 200_000)).collect();
        let page = page_by_bytes(big, MAX_EVENTS_BYTES);
        assert_eq!(page.len(), 2);
        let huge = vec![event(1, 2 << 20), event(2, 1)];
        assert_eq!(page_by_bytes(huge, MAX_EVENTS_BYTES).len(), 1);
    }
}
