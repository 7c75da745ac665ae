//! `herald serve`.

use crate::config::{Config, LogFormat, Overrides};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// TOML config file (see herald.example.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Public listener (WebSocket, demo, SDK), default 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Admin listener (HTTP API, metrics), default 127.0.0.1:9090.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// Redis URL; without one Herald runs embedded (one node, in memory).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let flags = Overrides {
        listen: a.listen,
        admin_listen: a.admin_listen,
        redis: a.redis,
    };
    let config = Config::load(a.config.as_deref(), &flags)?;
    init_tracing(&config);
    let listeners = crate::Listeners::bind(&config).await?;
    let ran = crate::run(config, listeners, crate::shutdown_signal()).await;
    // What repeated since the last summary is said before the process ends.
    crate::logs::flush();
    ran.context("herald serve")?;
    Ok(())
}

fn init_tracing(config: &Config) {
    crate::logs::set_interval(config.log.repeat_interval);
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: not in files, pipes or the journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log.format {
        // JSON escapes every field itself.
        LogFormat::Json => builder
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .init(),
        LogFormat::Text => builder.with_writer(|| OneLine(std::io::stderr())).init(),
    }
}

/// Text logs: one event, one line. Field values come from clients and
/// tokens (user ids, event names, ack ids); a newline or carriage return
/// in one must not forge a log line, so control characters inside the
/// event are written escaped (`\n`, `\u{7}`), and only the event's own
/// final newline is kept. ESC is left to the formatter, which escapes it in
/// field values and uses it for colours. The formatter hands over each
/// event in one write.
struct OneLine<W>(W);

impl<W: std::io::Write> std::io::Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        let plain = |c: char| !c.is_control() || c == '\t' || c == '\x1b';
        if body.chars().all(plain) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = String::with_capacity(body.len() + 16);
        for c in body.chars() {
            match c {
                '\n' => line.push_str("\\n"),
                '\r' => line.push_str("\\r"),
                c if plain(c) => line.push(c),
                c => line.push_str(&c.escape_unicode().to_string()),
            }
        }
        line.push_str(end);
        self.0.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::OneLine;
    use std::io::Write;

    #[test]
    fn control_characters_inside_an_event_are_escaped() {
        let mut out = OneLine(Vec::new());
        out.write_all(b"INFO session open user=mallory\nERROR forged line\r\x07\n")
            .expect("write");
        assert_eq!(
            String::from_utf8(out.0).expect("utf-8"),
            "INFO session open user=mallory\\nERROR forged line\\r\\u{7}\n"
        );
        // An ordinary line passes untouched: positive control.
        let mut out = OneLine(Vec::new());
        out.write_all(b"INFO herald serving\tnode=a\n")
            .expect("write");
        assert_eq!(out.0, b"INFO herald serving\tnode=a\n");
    }
}
