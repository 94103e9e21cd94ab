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
    out.push(b'"');
    push_escaped(out, text);
    out.push(b'"');
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

/// A field the line places itself, kept as plain text.
#[derive(Default)]
struct Slot {
    is_set: bool,
    text: String,
}

impl Slot {
    fn set(&mut self) -> &mut String {
        self.is_set = true;
        self.text.clear();
        &mut self.text
    }
}

/// An event's own fields, rendered straight into reused buffers: the named
/// ones as text, the rest as `,"name":value` JSON in the order recorded.
#[derive(Default)]
struct EventFields {
    event: Slot,
    correlation_id: Slot,
    message: Slot,
    names: Vec<&'static str>,
    rest: Vec<u8>,
}

impl EventFields {
    fn slot(&mut self, name: &str) -> Option<&mut Slot> {
        match name {
            "event" => Some(&mut self.event),
            "correlation_id" => Some(&mut self.correlation_id),
            "message" => Some(&mut self.message),
            _ => None,
        }
    }

    /// Starts field `name` in `rest`, or `None` when it was recorded already
    /// (the first value stays).
    fn start(&mut self, name: &'static str) -> Option<&mut Vec<u8>> {
        if self.names.contains(&name) {
            return None;
        }
        self.names.push(name);
        self.rest.push(b',');
        push_json_string(&mut self.rest, name);
        self.rest.push(b':');
        Some(&mut self.rest)
    }

    /// A value whose JSON text is also its plain text (numbers, booleans).
    fn put_plain(&mut self, field: &Field, value: impl std::fmt::Display) {
        use std::fmt::Write as _;
        use std::io::Write as _;
        match self.slot(field.name()) {
            // Writing into a `String` or a `Vec` cannot fail.
            Some(slot) => drop(write!(slot.set(), "{value}")),
            None => {
                if let Some(out) = self.start(field.name()) {
                    let _ = write!(out, "{value}");
                }
            }
        }
    }
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match self.slot(field.name()) {
            Some(slot) => slot.set().push_str(value),
            None => {
                if let Some(out) = self.start(field.name()) {
                    push_json_string(out, value);
                }
            }
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put_plain(field, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put_plain(field, value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put_plain(field, value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put_plain(field, serde_json::Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        match self.slot(field.name()) {
            // Writing into a `String` cannot fail.
            Some(slot) => drop(write!(slot.set(), "{value:?}")),
            None => {
                if let Some(out) = self.start(field.name()) {
                    out.push(b'"');
                    let _ = write!(JsonEscaped(out), "{value:?}");
                    out.push(b'"');
                }
            }
        }
    }
}

/// What formatting one event needs, kept per thread so a line costs no
/// allocation once the buffers have grown.
#[derive(Default)]
struct EventScratch {
    own: EventFields,
    /// The spans' fields the event did not set, as `,"name":value` JSON.
    outer: Vec<u8>,
    line: Vec<u8>,
}

impl EventScratch {
    fn clear(&mut self) {
        let EventFields { event, correlation_id, message, names, rest } = &mut self.own;
        for slot in [event, correlation_id, message] {
            slot.is_set = false;
        }
        names.clear();
        rest.clear();
        self.outer.clear();
        self.line.clear();
    }
}

thread_local! {
    static EVENT_SCRATCH: RefCell<EventScratch> = RefCell::default();
}

/// Escapes what is written through it as the inside of a JSON string, exactly
/// as `serde_json` does (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other
/// control characters as `\u00XX`).
struct JsonEscaped<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for JsonEscaped<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        push_escaped(self.0, text);
        Ok(())
    }
}

fn push_escaped(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut plain_from = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain_from..index]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        plain_from = index + 1;
    }
    out.extend_from_slice(&bytes[plain_from..]);
}

/// RFC 3339 in UTC with microseconds (`2023-10-27T10:00:00.000000Z`); the
/// part down to the second is kept per thread, as lines come many a second.
fn push_timestamp(out: &mut Vec<u8>, now: std::time::SystemTime) {
    thread_local! {
        static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    let since_epoch = now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seconds = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != seconds {
            let text = chrono::DateTime::from_timestamp(seconds, 0)
                .unwrap_or_default()
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string();
            *second = (seconds, text);
        }
        out.extend_from_slice(second.1.as_bytes());
    });
    let micros = since_epoch.subsec_micros();
    out.push(b'.');
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
    out.push(b'Z');
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
        EVENT_SCRATCH.with(|scratch| {
            // A logger reached again while formatting (a `Debug` impl that
            // logs) gets fresh buffers rather than the borrowed ones.
            let mut fresh = EventScratch::default();
            let mut borrowed = scratch.try_borrow_mut();
            let scratch = match borrowed.as_deref_mut() {
                Ok(scratch) => scratch,
                Err(_) => &mut fresh,
            };
            scratch.clear();
            event.record(&mut scratch.own);
            let EventScratch { own, outer, line } = scratch;
            // Innermost span first: the nearest value of a field wins.
            let mut correlation_id: Option<String> = None;
            for span in context.event_scope(event).into_iter().flatten() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<Fields>() else { continue };
                if !own.correlation_id.is_set && correlation_id.is_none() {
                    correlation_id.clone_from(&fields.correlation_id);
                }
                for (name, json) in &fields.rest {
                    if own.names.contains(name) {
                        continue;
                    }
                    own.names.push(name);
                    outer.push(b',');
                    push_json_string(outer, name);
                    outer.push(b':');
                    outer.extend_from_slice(json.as_bytes());
                }
            }

            line.extend_from_slice(b"{\"timestamp\":\"");
            push_timestamp(line, std::time::SystemTime::now());
            line.extend_from_slice(b"\",\"level\":\"");
            line.extend_from_slice(level_name(event.metadata().level()).as_bytes());
            line.extend_from_slice(b"\",\"event\":");
            let event_name = if own.event.is_set { &own.event } else { &own.message };
            push_json_string(line, if event_name.is_set { &event_name.text } else { "" });
            line.extend_from_slice(b",\"correlation_id\":");
            match (own.correlation_id.is_set, &correlation_id) {
                (true, _) => push_json_string(line, &own.correlation_id.text),
                (false, Some(correlation)) => push_json_string(line, correlation),
                (false, None) => line.extend_from_slice(b"null"),
            }
            if own.message.is_set && own.event.is_set {
                line.extend_from_slice(b",\"message\":");
                push_json_string(line, &own.message.text);
            }
            line.extend_from_slice(&own.rest);
            line.extend_from_slice(outer);
            line.extend_from_slice(b"}\n");
            let held = HELD_LINES.with(|held| match held.borrow_mut().as_mut() {
                Some(lines) => {
                    lines.extend_from_slice(line);
                    true
                }
                None => false,
            });
            if !held {
                let _ = self.sink.make_writer().write_all(line);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn strings_are_escaped_exactly_as_serde_json_escapes_them(text in "(\\PC|[\\x00-\\x1f\"\\\\\\x7f])*") {
            let mut ours = Vec::new();
            push_json_string(&mut ours, &text);
            prop_assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&text).unwrap());
        }

        #[test]
        fn timestamps_are_rfc3339_utc_with_microseconds(micros in 0i64..4_102_444_800_000_000) {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(micros as u64);
            let mut ours = Vec::new();
            push_timestamp(&mut ours, at);
            push_timestamp(&mut ours, at);
            let expected = chrono::DateTime::from_timestamp_micros(micros)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            prop_assert_eq!(String::from_utf8(ours).unwrap(), format!("{expected}{expected}"));
        }
    }
}
