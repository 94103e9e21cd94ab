//! Logging set up once per process: JSON lines shaped as the operator's guide
//! shows (`timestamp`, lower-case `level`, `event`, `correlation_id`, then the
//! event's own fields), or a pretty format for terminals. The sink is an
//! argument so tests can capture or silence it.
//!
//! Every line logged inside a span carries the span's fields too (the request
//! span's `correlation_id`, `route` and `method`), so a client's id finds every
//! line its request caused; a field the event sets itself wins.

use std::fmt::Write as _;
use std::io::Write as _;

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
        LogFormat::Json => Registry::default().with(filter).with(JsonLines { sink }).try_init(),
        LogFormat::Pretty => Registry::default()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_writer(sink).with_target(false))
            .try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadyInstalled)
}

struct JsonLines<W> {
    sink: W,
}

#[derive(Default, Clone)]
struct Fields {
    event: Option<String>,
    correlation_id: Option<String>,
    message: Option<String>,
    rest: Vec<(String, serde_json::Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        let as_text = || match &value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        match field.name() {
            "event" => self.event = Some(as_text()),
            "correlation_id" => self.correlation_id = Some(as_text()),
            "message" => self.message = Some(as_text()),
            name => match self.rest.iter_mut().find(|(known, _)| known == name) {
                Some((_, known)) => *known = value,
                None => self.rest.push((name.to_owned(), value)),
            },
        }
    }

    /// Fills in what `outer` (an enclosing span) knows and this does not.
    fn inherit(&mut self, outer: &Fields) {
        if self.correlation_id.is_none() {
            self.correlation_id.clone_from(&outer.correlation_id);
        }
        let own = std::mem::take(&mut self.rest);
        self.rest = outer
            .rest
            .iter()
            .filter(|(name, _)| !own.iter().any(|(mine, _)| mine == name))
            .cloned()
            .collect();
        self.rest.extend(own);
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
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
        let mut fields = Fields::default();
        event.record(&mut fields);
        // Innermost span first: the nearest value of a field wins.
        if let Some(scope) = context.event_scope(event) {
            for span in scope {
                if let Some(outer) = span.extensions().get::<Fields>() {
                    fields.inherit(outer);
                }
            }
        }
        let quote = |text: &str| serde_json::Value::String(text.to_owned()).to_string();
        let mut line = String::with_capacity(256);
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let event_name = fields.event.clone().or_else(|| fields.message.clone()).unwrap_or_default();
        let _ = write!(
            line,
            "{{\"timestamp\":{},\"level\":{},\"event\":{}",
            quote(&timestamp),
            quote(&level),
            quote(&event_name)
        );
        let correlation = fields.correlation_id.as_deref().map_or_else(|| "null".to_owned(), quote);
        let _ = write!(line, ",\"correlation_id\":{correlation}");
        if let (Some(message), Some(_)) = (&fields.message, &fields.event) {
            let _ = write!(line, ",\"message\":{}", quote(message));
        }
        for (name, value) in &fields.rest {
            let _ = write!(line, ",{}:{}", quote(name), value);
        }
        line.push_str("}\n");
        let _ = self.sink.make_writer().write_all(line.as_bytes());
    }
}
