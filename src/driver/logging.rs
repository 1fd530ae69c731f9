//! Where `tracing` goes. Under journald (stderr connected to the journal,
//! as systemd sets it up) every event becomes one journal record through
//! `systemd-journal-logger`, its fields (door, reader, credential, seq,
//! reason, …) as journal fields, so `journalctl DOOR=side-entrance` works.
//! Otherwise: human-readable lines on stderr (stdout stays the verbs').
//!
//! The level comes from `RUST_LOG` when set (an operator's explicit
//! override), else from the config's `[log] level`, else the caller's
//! default; it can be changed at run time (SIGHUP reload).
//!
//! Secrets never reach a log call: keys, PINs and passwords are not fields
//! of any event (tests run verbose and grep for the demo's keys).

use std::fmt::Write as _;

use thiserror::Error;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

/// Why a log level was not applied (the running level stays).
#[derive(Debug, Error)]
pub enum LoggingError {
    /// `RUST_LOG` is set: an operator's explicit override wins over the
    /// config.
    #[error("RUST_LOG is set and takes precedence")]
    EnvOverride,
    /// The level is no `EnvFilter` directive.
    #[error("{0}")]
    Directive(#[source] tracing_subscriber::filter::ParseError),
    /// The subscriber is gone (the process is ending).
    #[error("{0}")]
    Reload(#[source] reload::Error),
}

/// Changes the log level of the running process.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    env_override: bool,
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl")
            .field("env_override", &self.env_override)
            .finish_non_exhaustive()
    }
}

impl LogControl {
    /// Use `level` (an `EnvFilter` directive such as `info` or
    /// `portier=debug`) unless `RUST_LOG` overrides it.
    pub fn set_level(&self, level: &str) -> Result<(), LoggingError> {
        if self.env_override {
            return Err(LoggingError::EnvOverride);
        }
        let filter = EnvFilter::try_new(level).map_err(LoggingError::Directive)?;
        self.handle.reload(filter).map_err(LoggingError::Reload)
    }
}

/// Install the global subscriber. `default` is used when `RUST_LOG` is not
/// set.
pub fn init(default: &str) -> LogControl {
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_override = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(default));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let journal = systemd_journal_logger::connected_to_journal()
        .then(|| systemd_journal_logger::JournalLog::new().ok())
        .flatten();
    match journal {
        Some(journal) => registry
            .with(JournalLayer {
                journal: journal.with_syslog_identifier("portier".into()),
            })
            .init(),
        None => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init(),
    }
    LogControl {
        handle,
        env_override,
    }
}

/// Sends each tracing event to the journal as one record, its fields as
/// journal fields (the `log` key-values that systemd-journal-logger turns
/// into `FIELD=value`).
struct JournalLayer {
    journal: systemd_journal_logger::JournalLog,
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.pairs.push((field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.pairs.push((field.name(), format!("{value:?}")));
        }
    }
}

impl<S: Subscriber> Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        use log::Log;
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match *meta.level() {
            tracing::Level::ERROR => log::Level::Error,
            tracing::Level::WARN => log::Level::Warn,
            tracing::Level::INFO => log::Level::Info,
            tracing::Level::DEBUG => log::Level::Debug,
            tracing::Level::TRACE => log::Level::Trace,
        };
        let pairs: Vec<(&str, &str)> = fields.pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.journal.log(
            &log::Record::builder()
                .level(level)
                .target(meta.target())
                .module_path(meta.module_path())
                .file(meta.file())
                .line(meta.line())
                .key_values(&pairs)
                .args(format_args!("{}", fields.message))
                .build(),
        );
    }
}
