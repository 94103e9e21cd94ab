//! Logging set up once per process: JSON lines shaped as the operator's guide
//! shows (`timestamp`, lower-case `level`, `event`, `correlation_id`, then the
//! event's own fields), or a pretty format for terminals. The sink is an
//! argument so tests can capture or silence it.
//!
//! Every line logged inside a span carries the span's fields too (the request
//! span's `correlation_id`, `route` and `method`), so a client's id finds every
//! line its request caused; a field the event sets itself wins.

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::{Arc, OnceLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Registry};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line (the default; what log pipelines parse).
    #[default]
    Json,
    /// Human-readable lines for a terminal.
    Pretty,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The level filter does not parse.
    #[error("invalid log filter {0:?}: {1}")]
    Filter(String, String),
    /// Another global subscriber is installed already.
    #[error("a global logger is installed already")]
    AlreadyInstalled,
}

/// Installs the process-wide logger writing to `sink`, at `filter` (e.g. `info`).
pub fn init_logging<W>(format: LogFormat, filter: &str, sink: W) -> Result<(), TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter)
        .map_err(|error| TelemetryError::Filter(filter.into(), error.to_string()))?;
    let result = match format {
        LogFormat::Json => {
            let sink = Arc::new(sink);
            let held_sink = Arc::clone(&sink);
            let installed = Registry::default().with(filter).with(JsonLines { sink }).try_init();
            if installed.is_ok() {
                // Set once, with the one global logger.
                let _ = HELD_LINES_SINK.set(Box::new(move |lines: &[u8]| {
                    let _ = held_sink.make_writer().write_all(lines);
                }));
            }
            installed
        }
        LogFormat::Pretty => Registry::default()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_writer(sink).with_target(false))
            .try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadyInstalled)
}

fn level_name(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warn",
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG => "debug",
        tracing::Level::TRACE => "trace",
    }
}

struct JsonLines<W> {
    sink: Arc<W>,
}

/// Writes lines to the JSON logger's sink.
type LineSink = Box<dyn Fn(&[u8]) + Send + Sync>;

/// Where [`in_one_write`] sends the lines it held.
static HELD_LINES_SINK: OnceLock<LineSink> = OnceLock::new();

thread_local! {
    /// The lines held on this thread by [`in_one_write`], if it is running.
    static HELD_LINES: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Runs `work` (which must not await: the lines are held per thread) and
/// writes the JSON lines it logged with one `write(2)` when it ends: a batch
/// of a thousand receipts costs the log pipe one write, not a thousand.
/// Lines keep their order and content; nested calls join the outer one.
pub(crate) fn in_one_write<T>(work: impl FnOnce() -> T) -> T {
    let outermost = HELD_LINES.with(|held| {
        let mut held = held.borrow_mut();
        if held.is_some() {
            return false;
        }
        *held = Some(Vec::new());
        true
    });
    if !outermost {
        return work();
    }
    // Flushed when dropped, so a panic in `work` does not keep holding lines.
    struct Flush;
    impl Drop for Flush {
        fn drop(&mut self) {
            let lines = HELD_LINES.with(|held| held.borrow_mut().take()).unwrap_or_default();
            if let (false, Some(sink)) = (lines.is_empty(), HELD_LINES_SINK.get()) {
                sink(&lines);
            }
        }
    }
    let _flush = Flush;
    work()
}

/// An event's or a span's fields, values already rendered as JSON text, so
/// a line is assembled without building a JSON tree per event.
#[derive(Default)]
struct Fields {
    event: Option<String>,
    correlation_id: Option<String>,
    message: Option<String>,
    rest: Vec<(&'static str, String)>,
}

impl Fields {
    /// The slot of a field the line places itself (kept as plain text).
    fn named_slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        match name {
            "event" => Some(&mut self.event),
            "correlation_id" => Some(&mut self.correlation_id),
            "message" => Some(&mut self.message),
            _ => None,
        }
    }

    fn put_text(&mut self, field: &Field, text: &str) {
        match self.named_slot(field.name()) {
            Some(slot) => *slot = Some(text.to_owned()),
            // Serialising a `str` cannot fail.
            None => self.put_json(field.name(), serde_json::to_string(text).unwrap_or_default()),
        }
    }

    /// A number or boolean: its JSON text is also its plain text.
    fn put_other(&mut self, field: &Field, json: String) {
        match self.named_slot(field.name()) {
            Some(slot) => *slot = Some(json),
            None => self.put_json(field.name(), json),
        }
    }

    fn put_json(&mut self, name: &'static str, json: String) {
        match self.rest.iter_mut().find(|(known, _)| *known == name) {
            Some((_, known)) => *known = json,
            None => self.rest.push((name, json)),
        }
    }
}

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(out, text);
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put_text(field, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put_other(field, value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put_other(field, value.to_string());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put_other(field, value.to_string());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put_other(field, serde_json::Value::from(value).to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put_text(field, &format!("{value:?}"));
    }
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        if let Some(span) = context.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        if let Some(span) = context.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        let mut own = Fields::default();
        event.record(&mut own);
        // Innermost span first: the nearest value of a field wins.
        let spans: Vec<_> = context.event_scope(event).into_iter().flatten().collect();
        let extensions: Vec<_> = spans.iter().map(|span| span.extensions()).collect();
        let outer: Vec<&Fields> = extensions.iter().filter_map(|found| found.get::<Fields>()).collect();

        let mut line = Vec::with_capacity(256);
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        line.extend_from_slice(b"{\"timestamp\":");
        push_json_string(&mut line, &timestamp);
        line.extend_from_slice(b",\"level\":");
        push_json_string(&mut line, level_name(event.metadata().level()));
        line.extend_from_slice(b",\"event\":");
        push_json_string(&mut line, own.event.as_deref().or(own.message.as_deref()).unwrap_or_default());
        line.extend_from_slice(b",\"correlation_id\":");
        match own
            .correlation_id
            .as_deref()
            .or_else(|| outer.iter().find_map(|span| span.correlation_id.as_deref()))
        {
            Some(correlation) => push_json_string(&mut line, correlation),
            None => line.extend_from_slice(b"null"),
        }
        if let (Some(message), Some(_)) = (&own.message, &own.event) {
            line.extend_from_slice(b",\"message\":");
            push_json_string(&mut line, message);
        }
        let mut written: Vec<&'static str> = Vec::with_capacity(16);
        for fields in std::iter::once(&own).chain(outer.iter().copied()) {
            for (name, json) in &fields.rest {
                if written.contains(name) {
                    continue;
                }
                written.push(name);
                line.push(b',');
                push_json_string(&mut line, name);
                line.push(b':');
                line.extend_from_slice(json.as_bytes());
            }
        }
        line.extend_from_slice(b"}\n");
        let held = HELD_LINES.with(|held| match held.borrow_mut().as_mut() {
            Some(lines) => {
                lines.extend_from_slice(&line);
                true
            }
            None => false,
        });
        if !held {
            let _ = self.sink.make_writer().write_all(&line);
        }
    }
}
