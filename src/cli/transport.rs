//! How publishing commands reach Herald: Redis directly, or a node's admin
//! API. `--redis` wins, then `--api`, then `HERALD_REDIS__URL`, then the
//! admin API at http://127.0.0.1:9090.

use crate::bus::{Reach, ScheduleDirect};
use crate::envelope::Command;
use anyhow::{Context, bail};

#[derive(clap::Args, Debug, Clone)]
pub struct Transport {
    /// Publish through this Redis (e.g. redis://127.0.0.1:6379).
    #[arg(long, value_name = "URL", env = "HERALD_REDIS__URL")]
    redis: Option<String>,
    /// The Redis URL names seed nodes of a Redis Cluster (comma-separated).
    #[arg(long, env = "HERALD_REDIS__CLUSTER")]
    redis_cluster: bool,
    /// Key prefix of the Redis deployment.
    #[arg(
        long,
        value_name = "PREFIX",
        env = "HERALD_REDIS__PREFIX",
        default_value = "herald"
    )]
    prefix: String,
    /// Publish through a node's admin API (e.g. http://127.0.0.1:9090).
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// The nodes' config file: with --redis, the history window and stream
    /// lengths are theirs (HERALD_HISTORY__*, HERALD_MESSAGES__* apply too).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// API key for the admin API.
    #[arg(
        long,
        value_name = "KEY",
        env = "HERALD_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
}

const DEFAULT_API: &str = "http://127.0.0.1:9090";

impl Transport {
    /// Sends a checked command and says who it reached (for `users`).
    pub async fn send(
        &self,
        cmd: &Command,
        envelope_json: &str,
    ) -> anyhow::Result<(Option<String>, Option<Reach>)> {
        // An explicit --api wins over a Redis URL that came from the environment.
        if let (Some(url), None) = (&self.redis, &self.api) {
            let config = self.node_config()?;
            // The nodes would refuse an app link outside their list.
            if let Command::Publish(p) = cmd {
                p.envelope.check_links(&config.link_schemes())?;
            }
            // A send_at ahead: held in Redis for the nodes to publish.
            if let Command::Publish(p) = cmd
                && let Some(at) = p.send_later(crate::auth::unix_now_ms())
            {
                crate::bus::scheduled_direct(
                    url,
                    self.redis_cluster,
                    config.redis.tls_files(),
                    &self.prefix,
                    ScheduleDirect::Schedule(p, at, config.schedule.max_pending),
                )
                .await
                .with_context(|| format!("scheduling through {}", redact(url)))?;
                return Ok((None, None));
            }
            // As DELETE /v1/messages/{id}: a message still waiting is
            // cancelled, anything else retracted.
            if let Command::Retract { id, .. } = cmd {
                let cancelled = crate::bus::scheduled_direct(
                    url,
                    self.redis_cluster,
                    config.redis.tls_files(),
                    &self.prefix,
                    ScheduleDirect::Cancel(id),
                )
                .await
                .with_context(|| format!("cancelling through {}", redact(url)))?;
                if cancelled == serde_json::Value::Bool(true) {
                    return Ok((None, None));
                }
            }
            let reach = crate::bus::publish_direct(
                url,
                self.redis_cluster,
                config.redis.tls_files(),
                &self.prefix,
                &config.history,
                config.messages.stream_maxlen,
                cmd,
            )
            .await
            .with_context(|| format!("publishing through {}", redact(url)))?;
            return Ok((None, reach));
        }
        let base = self.api_base();
        let client = reqwest::Client::new();
        let req = match cmd {
            Command::Retract { id, .. } => {
                client.delete(format!("{base}/v1/messages/{}", encode(id)))
            }
            _ => client
                .post(format!("{base}/v1/messages"))
                .header("content-type", "application/json")
                .body(envelope_json.to_owned()),
        };
        let body = self.call(req).await?;
        let id = body.get("id").and_then(|v| v.as_str()).map(String::from);
        let list = |k: &str| -> Vec<String> {
            body.get(k)
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let reach = body.get("online").map(|_| Reach {
            online: list("online"),
            offline: list("offline"),
        });
        Ok((id, reach))
    }
}

impl Transport {
    /// Scheduled messages still waiting, soonest first (at most `limit`).
    pub async fn scheduled(&self, limit: usize) -> anyhow::Result<Vec<serde_json::Value>> {
        if let (Some(url), None) = (&self.redis, &self.api) {
            let config = self.node_config()?;
            let list = crate::bus::scheduled_direct(
                url,
                self.redis_cluster,
                config.redis.tls_files(),
                &self.prefix,
                ScheduleDirect::List(limit),
            )
            .await
            .with_context(|| format!("reading scheduled messages from {}", redact(url)))?;
            return Ok(match list {
                serde_json::Value::Array(list) => list,
                _ => Vec::new(),
            });
        }
        let base = self.api_base();
        let req = reqwest::Client::new().get(format!("{base}/v1/messages/scheduled?limit={limit}"));
        let mut body = self.call(req).await?;
        match body.get_mut("messages").map(serde_json::Value::take) {
            Some(serde_json::Value::Array(list)) => Ok(list),
            _ => bail!("{base} answered without a list of messages"),
        }
    }
}

impl Transport {
    /// The nodes' own configuration (`--config`, `HERALD_*`): what the CLI
    /// must do as they do when it goes to Redis directly.
    fn node_config(&self) -> anyhow::Result<crate::config::Config> {
        Ok(crate::config::Config::load(
            self.config.as_deref(),
            &crate::config::Overrides::default(),
        )?)
    }

    fn api_base(&self) -> &str {
        self.api
            .as_deref()
            .unwrap_or(DEFAULT_API)
            .trim_end_matches('/')
    }

    /// One admin API request, with the key: its JSON answer, or the
    /// node's reason as the error.
    async fn call(&self, req: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
        let base = self.api_base();
        let req = match &self.api_key {
            Some(key) => req.bearer_auth(key),
            None => req,
        };
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {base}"))?;
        let status = res.status();
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        if !status.is_success() {
            let reason = body
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("no reason given");
            bail!("{base} answered {status}: {reason}");
        }
        Ok(body)
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prints the id, and for `users` audiences who was online, as publish does.
pub fn report(id: &str, reach: Option<Reach>) {
    println!("{id}");
    if let Some(r) = reach {
        eprintln!("online: {}", r.online.join(","));
        eprintln!("offline: {}", r.offline.join(","));
    }
}
