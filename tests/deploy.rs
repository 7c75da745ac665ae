//! The deploy files and the SRE runbook against the code: deploy/Dockerfile,
//! deploy/docker-compose.yml with deploy/nginx.conf, deploy/k8s/,
//! deploy/herald.service, deploy/grafana/herald.json and docs/OPERATIONS.md.
//! Ports must be the code's defaults, probe paths must answer on a running
//! node, drain timeouts must exceed `shutdown_grace`, every `HERALD_*`
//! variable must be a key `Config` accepts, and every metric, label, flag
//! and endpoint they name must exist.

mod support;

use herald::config::{Config, Mode, Overrides};
use serde::Deserialize;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::*;

const API_KEY: &str = "deploy-test-admin-key-0123";

fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn yaml_docs(rel: &str) -> Vec<Yaml> {
    let text = read(rel);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            let mut v = Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: bad YAML: {e}"));
            v.apply_merge()
                .unwrap_or_else(|e| panic!("{rel}: bad merge key: {e}"));
            v
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_one(rel: &str) -> Yaml {
    let mut docs = yaml_docs(rel);
    assert_eq!(docs.len(), 1, "{rel}: expected one YAML document");
    docs.remove(0)
}

fn scalar(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Null => String::new(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn str_of<'a>(v: &'a Yaml, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v:?}"))
}

fn seq<'a>(v: &'a Yaml, what: &str) -> &'a Vec<Yaml> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("{what}: expected a list, got {v:?}"))
}

/// A YAML mapping of environment variables (or a `K=V` list) as pairs.
fn env_pairs(v: &Yaml, what: &str) -> Vec<(String, String)> {
    match v {
        Yaml::Mapping(m) => m.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        Yaml::Sequence(items) => items
            .iter()
            .map(|i| {
                let s = scalar(i);
                let (k, v) = s
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{what}: expected K=V, got {s:?}"));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        other => panic!("{what}: expected environment variables, got {other:?}"),
    }
}

/// Loads the config exactly as `herald serve` would from this environment,
/// which refuses unknown `HERALD_*` keys by name.
fn load_env(env: &[(String, String)], what: &str) -> Config {
    for (k, _) in env {
        assert!(
            k.starts_with("HERALD_"),
            "{what}: {k} is not a HERALD_* variable: Herald would ignore it"
        );
    }
    Config::load_from(None, env, &Overrides::default())
        .unwrap_or_else(|e| panic!("{what}: Herald refuses this environment: {e}"))
}

fn duration(s: &str, what: &str) -> Duration {
    humantime::parse_duration(s.trim())
        .unwrap_or_else(|e| panic!("{what}: {s:?} is not a duration: {e}"))
}

fn defaults() -> Config {
    Config::default()
}

/// The `herald` binary's help for a subcommand: the flags it accepts.
fn help(sub: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([sub, "--help"])
        .output()
        .expect("run herald --help");
    assert!(
        out.status.success(),
        "`herald {sub}` is not a subcommand: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_flags_exist(sub: &str, args: &[String], what: &str) {
    let text = help(sub);
    for a in args.iter().filter(|a| a.starts_with("--")) {
        let flag = a.split('=').next().unwrap_or(a);
        assert!(
            text.split(|c: char| c.is_whitespace() || c == ',')
                .any(|w| w == flag),
            "{what}: `herald {sub}` has no flag {flag}"
        );
    }
}

async fn http_status(url: &str, key: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .status()
        .as_u16()
}

// ---------------------------------------------------------------- Dockerfile

struct Instruction {
    stage: usize,
    keyword: String,
    args: String,
}

fn dockerfile() -> Vec<Instruction> {
    let text = read("deploy/Dockerfile");
    let mut out = Vec::new();
    let mut stage = 0;
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(part) = t.strip_suffix('\\') {
            pending.push_str(part);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let full = std::mem::take(&mut pending);
        let (keyword, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stage += 1;
        }
        out.push(Instruction {
            stage,
            keyword,
            args: args.trim().to_owned(),
        });
    }
    out
}

/// The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD.
fn exec_form(args: &str, what: &str) -> Vec<String> {
    serde_json::from_str(args.trim())
        .unwrap_or_else(|e| panic!("{what} must use the exec (JSON) form: {args}: {e}"))
}

#[tokio::test]
async fn dockerfile_matches_the_code() {
    let d = defaults();
    let ins = dockerfile();
    let last = ins.iter().map(|i| i.stage).max().expect("a FROM");
    assert!(last >= 2, "the Dockerfile must be multi-stage");
    let from: Vec<&Instruction> = ins.iter().filter(|i| i.keyword == "FROM").collect();
    assert!(
        from[0].args.starts_with("rust:1-bookworm "),
        "builder stage: {}",
        from[0].args
    );
    assert_eq!(from[from.len() - 1].args, "debian:bookworm-slim");
    assert!(
        ins.iter().any(|i| i.stage < last
            && i.keyword == "RUN"
            && i.args.contains("cargo build --release --locked")),
        "the builder runs cargo build --release --locked"
    );
    let runtime: Vec<&Instruction> = ins.iter().filter(|i| i.stage == last).collect();
    let get = |kw: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|i| i.keyword == kw)
            .map(|i| i.args.as_str())
            .collect()
    };

    // EXPOSE: exactly the default listener ports.
    let exposed: BTreeSet<u16> = get("EXPOSE")
        .iter()
        .flat_map(|a| a.split_whitespace())
        .map(|p| {
            p.trim_end_matches("/tcp")
                .parse()
                .unwrap_or_else(|_| panic!("EXPOSE {p}"))
        })
        .collect();
    assert_eq!(
        exposed,
        BTreeSet::from([d.listen.port(), d.admin_listen.port()]),
        "EXPOSE must be the public and admin default ports"
    );

    // Non-root user.
    let user = get("USER");
    assert_eq!(user.len(), 1, "one USER in the runtime stage");
    let uid = user[0].split(':').next().unwrap_or_default();
    assert!(
        uid != "root" && uid != "0",
        "the runtime stage must not run as root"
    );

    // Only the binary, plus ca-certificates.
    let copies: Vec<&str> = runtime
        .iter()
        .filter(|i| i.keyword == "COPY" || i.keyword == "ADD")
        .map(|i| i.args.as_str())
        .collect();
    assert_eq!(
        copies.len(),
        1,
        "the runtime stage copies one thing: {copies:?}"
    );
    assert!(
        copies[0].starts_with("--from=") && copies[0].ends_with(" /usr/local/bin/herald"),
        "it copies the binary from the builder: {}",
        copies[0]
    );
    let mut packages = BTreeSet::new();
    for run in get("RUN") {
        for part in run.split("&&") {
            if let Some((_, rest)) = part.split_once("apt-get install") {
                packages.extend(
                    rest.split_whitespace()
                        .filter(|w| !w.starts_with('-'))
                        .map(String::from),
                );
            }
        }
    }
    assert_eq!(
        packages,
        BTreeSet::from(["ca-certificates".to_owned()]),
        "runtime packages"
    );

    // ENTRYPOINT herald, CMD serve with flags herald accepts.
    let entry = exec_form(get("ENTRYPOINT").first().expect("ENTRYPOINT"), "ENTRYPOINT");
    assert_eq!(entry, ["herald"]);
    let cmd = exec_form(get("CMD").first().expect("CMD"), "CMD");
    assert_eq!(cmd.first().map(String::as_str), Some("serve"));
    assert_flags_exist("serve", &cmd, "Dockerfile CMD");
    if let Some(sig) = get("STOPSIGNAL").first() {
        assert_eq!(*sig, "SIGTERM", "SIGTERM starts Herald's drain");
    }

    // HEALTHCHECK: the public /healthz on the default port, and it works.
    let hc = get("HEALTHCHECK");
    assert_eq!(hc.len(), 1, "one HEALTHCHECK");
    let (_, argv) = hc[0].split_once("CMD ").expect("HEALTHCHECK ... CMD [...]");
    let argv = exec_form(argv, "HEALTHCHECK CMD");
    let script = argv.join(" ");
    let target = format!("/dev/tcp/127.0.0.1/{}", d.listen.port());
    assert!(
        script.contains(&target),
        "the health check must call the public port: {script}"
    );
    assert!(
        script.contains("/healthz"),
        "the health check calls /healthz"
    );
    let node = Herald::start(config()).await;
    let run = |port: u16| {
        let argv: Vec<String> = argv
            .iter()
            .map(|a| a.replace(&target, &format!("/dev/tcp/127.0.0.1/{port}")))
            .collect();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(&argv[0])
                    .args(&argv[1..])
                    .output()
                    .expect("run the health check")
                    .status
                    .success()
            })
            .await
            .expect("join")
        }
    };
    assert!(
        run(node.public.port()).await,
        "the health check fails against a live node"
    );
    assert!(
        !run(free_port()).await,
        "the health check passes with nothing listening"
    );
    node.stop().await;

    // The build context filter next to the Dockerfile keeps target/ out.
    let ignore = read("deploy/Dockerfile.dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        "Dockerfile.dockerignore must exclude target"
    );
}

// ------------------------------------------------------- compose and nginx

/// One nginx directive: name, arguments and, for blocks, children.
#[derive(Debug)]
struct Directive {
    name: String,
    args: Vec<String>,
    block: Vec<Directive>,
}

fn nginx_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {}
            '{' | '}' | ';' => out.push(c.to_string()),
            '\'' | '"' => {
                let mut s = String::new();
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                    s.push(d);
                }
                out.push(s);
            }
            c => {
                let mut s = c.to_string();
                while let Some(&d) = chars.peek() {
                    if d.is_whitespace() || matches!(d, '{' | '}' | ';') {
                        break;
                    }
                    s.push(d);
                    chars.next();
                }
                out.push(s);
            }
        }
    }
    out
}

fn nginx_parse(tokens: &mut std::vec::IntoIter<String>) -> Vec<Directive> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    while let Some(t) = tokens.next() {
        match t.as_str() {
            ";" => {
                let name = words.remove(0);
                out.push(Directive {
                    name,
                    args: std::mem::take(&mut words),
                    block: Vec::new(),
                });
            }
            "{" => {
                let name = words.remove(0);
                let block = nginx_parse(tokens);
                out.push(Directive {
                    name,
                    args: std::mem::take(&mut words),
                    block,
                });
            }
            "}" => return out,
            _ => words.push(t),
        }
    }
    out
}

fn find<'a>(ds: &'a [Directive], name: &str) -> Vec<&'a Directive> {
    ds.iter().filter(|d| d.name == name).collect()
}

fn one<'a>(ds: &'a [Directive], name: &str, what: &str) -> &'a Directive {
    let found = find(ds, name);
    assert_eq!(found.len(), 1, "{what}: expected one `{name}`");
    found[0]
}

fn header_set<'a>(ds: &'a [Directive], header: &str) -> Option<&'a str> {
    find(ds, "proxy_set_header")
        .into_iter()
        .find(|d| {
            d.args
                .first()
                .is_some_and(|h| h.eq_ignore_ascii_case(header))
        })
        .and_then(|d| d.args.get(1).map(String::as_str))
}

#[test]
fn compose_and_nginx_match_the_code() {
    let d = defaults();
    let compose = yaml_one("deploy/docker-compose.yml");
    let services = compose["services"]
        .as_mapping()
        .expect("services in docker-compose.yml");
    let names: BTreeSet<String> = services.keys().map(scalar).collect();

    // The Herald nodes: built from deploy/Dockerfile.
    let mut nodes = Vec::new();
    for (name, svc) in services {
        if svc["build"]["dockerfile"].as_str() == Some("deploy/Dockerfile") {
            nodes.push((scalar(name), svc));
        }
    }
    assert_eq!(nodes.len(), 2, "two Herald nodes in the compose file");
    let mut node_ids = BTreeSet::new();
    let mut redis_hosts = BTreeSet::new();
    for (name, svc) in &nodes {
        let what = format!("docker-compose.yml service {name}");
        let env = env_pairs(&svc["environment"], &what);
        let cfg = load_env(&env, &what);
        assert_eq!(cfg.listen.port(), d.listen.port(), "{what}: public port");
        assert_eq!(
            cfg.admin_listen.port(),
            d.admin_listen.port(),
            "{what}: admin port"
        );
        assert!(
            cfg.admin_listen.ip().is_unspecified(),
            "{what}: the admin listener must be reachable from other containers"
        );
        let url = cfg
            .redis
            .url
            .clone()
            .unwrap_or_else(|| panic!("{what}: HERALD_REDIS__URL is not set"));
        let host = url
            .trim_start_matches("redis://")
            .split([':', '/'])
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(
            names.contains(&host),
            "{what}: Redis host {host} is not a compose service"
        );
        redis_hosts.insert(host);
        node_ids.insert(cfg.node_id.clone());
        // The drain must fit in the stop grace period.
        let stop = duration(
            svc["stop_grace_period"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: stop_grace_period")),
            &what,
        );
        assert!(
            stop > cfg.shutdown_grace && stop > d.shutdown_grace,
            "{what}: stop_grace_period {stop:?} must exceed shutdown_grace {:?}",
            cfg.shutdown_grace
        );
        // Published admin ports map to the admin listener.
        for p in svc["ports"].as_sequence().into_iter().flatten() {
            let p = scalar(p);
            let container: u16 = p
                .rsplit(':')
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or_else(|| panic!("{what}: port {p}"));
            assert!(
                [d.listen.port(), d.admin_listen.port()].contains(&container),
                "{what}: published port {p} maps to no listener"
            );
        }
    }
    assert_eq!(node_ids.len(), 2, "each node has its own HERALD_NODE_ID");
    assert_eq!(redis_hosts.len(), 1, "both nodes share one Redis");

    // nginx: mounts deploy/nginx.conf, publishes the demo on 8080.
    let nginx = &compose["services"]["nginx"];
    let volumes: Vec<String> = seq(&nginx["volumes"], "nginx volumes")
        .iter()
        .map(scalar)
        .collect();
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with("./nginx.conf:/etc/nginx/nginx.conf")),
        "nginx mounts ./nginx.conf: {volumes:?}"
    );
    let published: Vec<String> = seq(&nginx["ports"], "nginx ports")
        .iter()
        .map(scalar)
        .collect();
    let (host_port, nginx_port) = published
        .iter()
        .find_map(|p| {
            let mut parts = p.rsplit(':');
            let c = parts.next()?.parse::<u16>().ok()?;
            let h = parts.next()?.parse::<u16>().ok()?;
            Some((h, c))
        })
        .expect("nginx publishes a port");
    assert_eq!(host_port, 8080, "the demo is at http://localhost:8080");

    let conf = nginx_parse(&mut nginx_tokens(&read("deploy/nginx.conf")).into_iter());
    let http = one(&conf, "http", "nginx.conf");
    // Upstream: every Herald node on its public port, nothing else.
    let upstream = one(&http.block, "upstream", "nginx.conf http");
    let upstream_name = upstream.args.first().expect("upstream name").clone();
    let servers: BTreeSet<String> = find(&upstream.block, "server")
        .iter()
        .map(|s| s.args[0].clone())
        .collect();
    let expected: BTreeSet<String> = nodes
        .iter()
        .map(|(n, _)| format!("{n}:{}", d.listen.port()))
        .collect();
    assert_eq!(servers, expected, "nginx upstream servers");
    // The Connection header map for upgrades.
    let map = find(&http.block, "map")
        .into_iter()
        .find(|m| m.args == ["$http_upgrade", "$connection_upgrade"])
        .expect("map $http_upgrade $connection_upgrade");
    assert!(
        map.block
            .iter()
            .any(|e| e.name == "default" && e.args == ["upgrade"]),
        "the map gives `upgrade` when the client upgrades"
    );
    let server = one(&http.block, "server", "nginx.conf http");
    let listen = &one(&server.block, "listen", "nginx server").args[0];
    assert_eq!(
        listen.rsplit(':').next(),
        Some(nginx_port.to_string().as_str()),
        "nginx listens on the port compose publishes"
    );
    let locations = find(&server.block, "location");
    let ws = locations
        .iter()
        .find(|l| l.args.last().map(String::as_str) == Some("/v1/ws"))
        .expect("a location for /v1/ws");
    assert_eq!(
        one(&ws.block, "proxy_http_version", "/v1/ws").args,
        ["1.1"],
        "WebSockets need HTTP/1.1 upstream"
    );
    assert_eq!(header_set(&ws.block, "Upgrade"), Some("$http_upgrade"));
    assert_eq!(
        header_set(&ws.block, "Connection"),
        Some("$connection_upgrade")
    );
    let read_timeout = duration(
        &one(&ws.block, "proxy_read_timeout", "/v1/ws").args[0],
        "proxy_read_timeout",
    );
    assert!(
        read_timeout > d.session.heartbeat * 2,
        "proxy_read_timeout {read_timeout:?} must outlast two heartbeats"
    );
    assert!(
        locations.iter().any(|l| l.args == ["/"]),
        "a location / for the demo, SDK and /healthz"
    );
    for l in &locations {
        let pass = &one(&l.block, "proxy_pass", "location").args[0];
        assert_eq!(pass, &format!("http://{upstream_name}"), "proxy_pass");
    }
    // Tokens travel in the query string: no log line may carry it.
    for f in find(&http.block, "log_format") {
        let format = f.args[1..].join(" ");
        for var in [
            "$request ",
            "$request\"",
            "$request_uri",
            "$args",
            "$query_string",
            "$arg_token",
        ] {
            assert!(
                !format.contains(var) && !format.ends_with("$request"),
                "log_format {} logs the query string (token) via {var}",
                f.args[0]
            );
        }
    }
    let access = one(&http.block, "access_log", "nginx http");
    let formats: BTreeSet<&str> = find(&http.block, "log_format")
        .iter()
        .map(|f| f.args[0].as_str())
        .collect();
    assert!(
        access
            .args
            .get(1)
            .is_some_and(|f| formats.contains(f.as_str())),
        "access_log must use a log_format of this file (nginx's default logs the token)"
    );
}

// ---------------------------------------------------------------- Kubernetes

fn port_number(port: &Yaml, named: &BTreeMap<String, u16>, what: &str) -> u16 {
    match port {
        Yaml::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .unwrap_or_else(|| panic!("{what}: port {n}")),
        Yaml::String(s) => *named
            .get(s)
            .unwrap_or_else(|| panic!("{what}: no container port named {s}")),
        other => panic!("{what}: port {other:?}"),
    }
}

#[tokio::test]
async fn k8s_manifests_match_the_code() {
    let d = defaults();
    let kustomization = yaml_one("deploy/k8s/kustomization.yaml");
    let resources: BTreeSet<String> = seq(&kustomization["resources"], "resources")
        .iter()
        .map(scalar)
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(path("deploy/k8s"))
        .expect("deploy/k8s")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        resources, on_disk,
        "kustomization.yaml must list every manifest"
    );
    let mut objects: BTreeMap<(String, String), Yaml> = BTreeMap::new();
    for r in &resources {
        for doc in yaml_docs(&format!("deploy/k8s/{r}")) {
            let kind = str_of(&doc["kind"], r).to_owned();
            let name = str_of(&doc["metadata"]["name"], r).to_owned();
            objects.insert((kind, name), doc);
        }
    }
    let by_kind = |kind: &str| -> Vec<&Yaml> {
        objects
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|(_, v)| v)
            .collect()
    };
    let deployments = by_kind("Deployment");
    assert_eq!(deployments.len(), 1, "one Deployment");
    let dep = deployments[0];
    let dep_name = str_of(&dep["metadata"]["name"], "Deployment");
    let pod = &dep["spec"]["template"];
    let pod_labels = pod["metadata"]["labels"].as_mapping().expect("pod labels");
    let containers = seq(&pod["spec"]["containers"], "containers");
    assert_eq!(containers.len(), 1, "one container");
    let c = &containers[0];

    // Ports: the code's defaults, by name.
    let named: BTreeMap<String, u16> = seq(&c["ports"], "ports")
        .iter()
        .map(|p| {
            (
                str_of(&p["name"], "port name").to_owned(),
                port_number(&p["containerPort"], &BTreeMap::new(), "containerPort"),
            )
        })
        .collect();
    let numbers: BTreeSet<u16> = named.values().copied().collect();
    assert_eq!(
        numbers,
        BTreeSet::from([d.listen.port(), d.admin_listen.port()]),
        "container ports"
    );

    // Configuration: ConfigMap + Secret + env, loaded as Herald would.
    let mut env: Vec<(String, String)> = Vec::new();
    for source in seq(&c["envFrom"], "envFrom") {
        if let Some(name) = source["configMapRef"]["name"].as_str() {
            let cm = objects
                .get(&("ConfigMap".into(), name.into()))
                .unwrap_or_else(|| panic!("envFrom names a missing ConfigMap {name}"));
            env.extend(env_pairs(&cm["data"], "ConfigMap data"));
        } else if let Some(name) = source["secretRef"]["name"].as_str() {
            let s = objects
                .get(&("Secret".into(), name.into()))
                .unwrap_or_else(|| panic!("envFrom names a missing Secret {name}"));
            assert!(
                s.get("data").is_none(),
                "keep the Secret in stringData (placeholders)"
            );
            let pairs = env_pairs(&s["stringData"], "Secret stringData");
            for (k, v) in &pairs {
                assert!(
                    v.contains("CHANGE-ME"),
                    "Secret {k} must be a clearly marked placeholder"
                );
            }
            assert!(
                pairs.iter().any(|(k, _)| k == "HERALD_AUTH__API_KEYS"),
                "the Secret holds the API keys"
            );
            env.extend(pairs);
        } else {
            panic!("envFrom: {source:?}");
        }
    }
    for e in c["env"].as_sequence().into_iter().flatten() {
        let name = str_of(&e["name"], "env name").to_owned();
        let value = match e.get("value") {
            Some(v) => scalar(v),
            // valueFrom (the pod name): any plausible value.
            None => "herald-5d8c7b9f6-x2k4q".to_owned(),
        };
        env.push((name, value));
    }
    let cfg = load_env(&env, "Deployment environment");
    assert_eq!(
        cfg.mode,
        Mode::Production,
        "the cluster runs in production mode"
    );
    assert!(cfg.auth.has_key(), "a JWT key comes from the Secret");
    assert!(
        !cfg.auth.api_keys.is_empty(),
        "API keys come from the Secret"
    );
    assert!(cfg.redis.url.is_some(), "the pods share a Redis");
    assert_eq!(
        BTreeSet::from([cfg.listen.port(), cfg.admin_listen.port()]),
        numbers,
        "the configured listeners are the container ports"
    );
    assert!(
        cfg.admin_listen.ip().is_unspecified(),
        "the kubelet probes the pod IP: the admin listener must not be loopback"
    );

    // Probes.
    let readiness = &c["readinessProbe"]["httpGet"];
    let liveness = &c["livenessProbe"]["httpGet"];
    let ready_path = str_of(&readiness["path"], "readinessProbe path").to_owned();
    let live_path = str_of(&liveness["path"], "livenessProbe path").to_owned();
    assert_eq!(ready_path, "/readyz");
    assert_eq!(live_path, "/healthz");
    assert_eq!(
        port_number(&readiness["port"], &named, "readinessProbe"),
        cfg.admin_listen.port(),
        "readiness is on the admin listener"
    );
    assert_eq!(
        port_number(&liveness["port"], &named, "livenessProbe"),
        cfg.listen.port(),
        "liveness is on the public listener"
    );

    // Drain: preStop, then SIGTERM, then shutdown_grace, all within the
    // termination grace period.
    let pre_stop = &c["lifecycle"]["preStop"];
    let pre_stop_s: u64 = if let Some(cmd) = pre_stop["exec"]["command"].as_sequence() {
        let cmd: Vec<String> = cmd.iter().map(scalar).collect();
        assert_eq!(
            cmd.first().map(String::as_str),
            Some("sleep"),
            "preStop: {cmd:?}"
        );
        cmd[1].parse().expect("sleep seconds")
    } else {
        pre_stop["sleep"]["seconds"]
            .as_u64()
            .expect("a preStop hook (exec sleep or sleep)")
    };
    let tgps = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let tgps = Duration::from_secs(tgps);
    assert!(
        tgps > d.shutdown_grace,
        "terminationGracePeriodSeconds must exceed the default shutdown_grace"
    );
    assert!(
        tgps > cfg.shutdown_grace + Duration::from_secs(pre_stop_s),
        "terminationGracePeriodSeconds {tgps:?} must exceed preStop {pre_stop_s}s + shutdown_grace {:?}",
        cfg.shutdown_grace
    );

    // The image's user.
    let uid = dockerfile()
        .into_iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .map(|i| i.args.split(':').next().unwrap_or_default().to_owned())
        .expect("USER");
    assert_eq!(
        pod["spec"]["securityContext"]["runAsUser"]
            .as_u64()
            .map(|u| u.to_string()),
        Some(uid),
        "runAsUser is the image's USER"
    );

    // Services, PDB, HPA point at these pods and ports.
    let selects_pods = |sel: &Yaml, what: &str| {
        let sel = sel
            .as_mapping()
            .unwrap_or_else(|| panic!("{what}: selector"));
        assert!(!sel.is_empty(), "{what}: empty selector");
        for (k, v) in sel {
            assert_eq!(
                pod_labels.get(k),
                Some(v),
                "{what}: selector {k:?} does not match the pods"
            );
        }
    };
    let services = by_kind("Service");
    assert!(!services.is_empty(), "a Service");
    let mut exposed = BTreeSet::new();
    for s in &services {
        selects_pods(&s["spec"]["selector"], "Service");
        for p in seq(&s["spec"]["ports"], "Service ports") {
            let target = port_number(&p["targetPort"], &named, "Service targetPort");
            assert!(
                numbers.contains(&target),
                "Service targets no container port"
            );
            exposed.insert(target);
        }
    }
    assert!(
        exposed.contains(&cfg.listen.port()),
        "a Service exposes the public listener"
    );
    let pdbs = by_kind("PodDisruptionBudget");
    assert_eq!(pdbs.len(), 1, "one PodDisruptionBudget");
    selects_pods(
        &pdbs[0]["spec"]["selector"]["matchLabels"],
        "PodDisruptionBudget",
    );
    let hpas = by_kind("HorizontalPodAutoscaler");
    assert_eq!(hpas.len(), 1, "one HorizontalPodAutoscaler");
    let target = &hpas[0]["spec"]["scaleTargetRef"];
    assert_eq!(target["kind"].as_str(), Some("Deployment"));
    assert_eq!(target["name"].as_str(), Some(dep_name));
    assert!(
        hpas[0]["spec"]["minReplicas"].as_u64().unwrap_or(1) >= 2,
        "at least two pods, so a drain has somewhere to send clients"
    );

    // The probe paths answer on a node configured like the pod (listeners
    // on free loopback ports, a Redis of the test's own).
    let redis = Redis::start();
    let mut node_cfg = cfg.clone();
    node_cfg.listen = "127.0.0.1:0".parse().expect("addr");
    node_cfg.admin_listen = "127.0.0.1:0".parse().expect("addr");
    node_cfg.redis.url = Some(redis.url());
    let node = Herald::start(node_cfg).await;
    let ready_url = format!("http://{}{ready_path}", node.admin);
    let live_url = format!("http://{}{live_path}", node.public);
    // The kubelet sends no API key.
    eventually("the readiness probe answers 200", || {
        let url = ready_url.clone();
        async move { http_status(&url, None).await == 200 }
    })
    .await;
    assert_eq!(http_status(&live_url, None).await, 200, "liveness probe");
    // Controls: a wrong path fails, and /metrics needs the key.
    assert_eq!(
        http_status(&format!("http://{}/healthz-nope", node.public), None).await,
        404
    );
    assert_eq!(
        http_status(&format!("http://{}/metrics", node.admin), None).await,
        401,
        "Prometheus must scrape /metrics with an API key"
    );
    node.stop().await;
}

// ------------------------------------------------------------------- systemd

fn unit_file(rel: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section = String::new();
    for line in read(rel).lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(s) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        let (k, v) = t
            .split_once('=')
            .unwrap_or_else(|| panic!("{rel}: not key=value: {t}"));
        out.entry(section.clone())
            .or_default()
            .push((k.trim().to_owned(), v.trim().to_owned()));
    }
    out
}

#[test]
fn systemd_unit_matches_the_code() {
    let d = defaults();
    let unit = unit_file("deploy/herald.service");
    let service = unit.get("Service").expect("[Service]");
    let get = |k: &str| -> Option<&str> {
        service
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    // The environment file example and the example config load together.
    let env: Vec<(String, String)> = read("deploy/herald.env.example")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("herald.env.example: {l}"));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    for (k, v) in &env {
        assert!(k.starts_with("HERALD_"), "herald.env.example: {k}");
        if k.contains("SECRET") || k.contains("API_KEYS") {
            assert!(
                v.contains("CHANGE-ME"),
                "herald.env.example: {k} must be a placeholder"
            );
        }
    }
    let cfg = Config::load_from(
        Some(&path("herald.example.toml")),
        &env,
        &Overrides::default(),
    )
    .unwrap_or_else(|e| panic!("herald.env.example: Herald refuses it: {e}"));

    let stop = duration(
        get("TimeoutStopSec").expect("TimeoutStopSec"),
        "TimeoutStopSec",
    );
    assert!(
        stop > d.shutdown_grace && stop > cfg.shutdown_grace,
        "TimeoutStopSec {stop:?} must exceed shutdown_grace"
    );
    assert!(
        matches!(get("KillSignal"), None | Some("SIGTERM")),
        "SIGTERM starts the drain"
    );
    assert!(
        matches!(
            get("Restart"),
            Some("on-failure" | "always" | "on-abnormal")
        ),
        "a restart policy"
    );
    let user = get("User").expect("User=");
    assert!(user != "root" && user != "0", "not as root");
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
    ] {
        assert_eq!(get(k), Some(v), "hardening: {k}");
    }
    let exec: Vec<String> = get("ExecStart")
        .expect("ExecStart")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert!(
        exec[0].ends_with("/herald"),
        "ExecStart runs herald: {exec:?}"
    );
    assert_eq!(exec[1], "serve");
    assert_flags_exist("serve", &exec[2..], "herald.service ExecStart");
    assert!(
        unit.get("Install")
            .is_some_and(|i| i.iter().any(|(k, _)| k == "WantedBy")),
        "[Install] WantedBy"
    );
}

// ---------------------------------------------- metrics: Grafana and runbook

/// What a running node exports: sample names with their label names, family
/// names (from `# TYPE`), and label values seen.
struct Exposition {
    samples: BTreeMap<String, BTreeSet<String>>,
    families: BTreeSet<String>,
}

fn parse_exposition(text: &str) -> Exposition {
    let mut samples: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut families = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                families.insert(name.to_owned());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = line[..end].to_owned();
        let labels = samples.entry(name).or_default();
        if line[end..].starts_with('{') {
            let body = &line[end + 1..line.rfind('}').unwrap_or(line.len())];
            let mut rest = body;
            while let Some((k, v)) = rest.split_once("=\"") {
                labels.insert(k.trim_start_matches(',').trim().to_owned());
                // Skip the value up to its closing, unescaped quote.
                let mut escaped = false;
                let mut close = v.len();
                for (i, ch) in v.char_indices() {
                    if escaped {
                        escaped = false;
                    } else if ch == '\\' {
                        escaped = true;
                    } else if ch == '"' {
                        close = i;
                        break;
                    }
                }
                rest = &v[(close + 1).min(v.len())..];
            }
        }
    }
    Exposition { samples, families }
}

/// A node in Redis mode with a sample in every labelled family: a client
/// error and frame, an auth refusal, a message, an invalid envelope, an
/// expired drop and an operator close.
async fn sampled_node() -> (Redis, Herald, Exposition) {
    let redis = Redis::start();
    let mut cfg = redis_config(&redis);
    cfg.auth.api_keys = vec![API_KEY.into()];
    let node = Herald::start(cfg).await;
    let mut client = node.connect("alice").await;
    client.send("{not json").await;
    assert_eq!(client.recv().await["t"], "error");
    client.send(r#"{"t":"ping"}"#).await;
    assert_eq!(client.recv().await["t"], "pong");
    let (status, _) = node
        .refused(&format!("{}?token=forged", node.ws_url()), &[])
        .await;
    assert_eq!(status, 401);
    // Redis input, repeated until counted (a publish can fall in a bus gap).
    let (r, n) = (&redis, &node);
    eventually("Redis samples counted", || async move {
        r.publish(
            "herald:broadcast",
            r#"{"to":"all","kind":"toast","title":"sample"}"#,
        )
        .await;
        r.publish(
            "herald:broadcast",
            r#"{"to":"all","kind":"toast","titel":"typo"}"#,
        )
        .await;
        r.publish(
            "herald:broadcast",
            r#"{"to":"all","kind":"toast","title":"old","expires_at":1}"#,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, text) = n.get("/metrics").await;
        [
            "herald_deliveries_total ",
            "herald_messages_total{",
            "herald_invalid_envelopes_total{",
            "herald_drops_total{",
        ]
        .iter()
        .all(|m| text.lines().any(|l| l.starts_with(m) && !l.ends_with(" 0")))
    })
    .await;
    eventually("operator disconnect accepted", || async move {
        n.post("/v1/users/alice/disconnect", "").await.0 == 202
    })
    .await;
    assert_eq!(client.closed().await.0, 1008);
    let (status, text) = node.get("/metrics").await;
    assert_eq!(status, 200);
    let expo = parse_exposition(&text);
    for family in [
        "herald_refusals_total",
        "herald_closes_total",
        "herald_client_frames_total",
        "herald_client_errors_total",
    ] {
        assert!(
            expo.samples.contains_key(family),
            "no sample of {family} after producing one:\n{text}"
        );
    }
    (redis, node, expo)
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Every identifier in a PromQL expression with its byte offset.
fn identifiers(expr: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut in_string = None;
    for (i, c) in expr.char_indices() {
        if let Some(q) = in_string {
            if c == q {
                in_string = None;
            }
            continue;
        }
        if c == '"' || c == '\'' {
            in_string = Some(c);
            start = None;
            continue;
        }
        match (start, is_ident(c) || (c == '$' && start.is_none())) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                out.push((s, &expr[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &expr[s..]));
    }
    out
}

/// Label names in every `by (...)` / `without (...)` clause.
fn grouping_labels(expr: &str) -> Vec<String> {
    let ids = identifiers(expr);
    let mut out = Vec::new();
    for (i, name) in &ids {
        if *name != "by" && *name != "without" {
            continue;
        }
        let rest = expr[i + name.len()..].trim_start();
        if let Some(list) = rest.strip_prefix('(') {
            let list = &list[..list.find(')').unwrap_or(list.len())];
            out.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            );
        }
    }
    out
}

/// `(label, op, value)` matchers right after a metric name at `pos`.
fn matchers(expr: &str, after: usize) -> Vec<(String, String)> {
    let rest = &expr[after..];
    let Some(body) = rest.strip_prefix('{') else {
        return Vec::new();
    };
    let body = &body[..body.find('}').unwrap_or(body.len())];
    let mut out = Vec::new();
    for part in body.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let split = part
            .find(['=', '!'])
            .unwrap_or_else(|| panic!("bad matcher {part:?} in {expr}"));
        let label = part[..split].trim().to_owned();
        let value = part[split..]
            .trim_start_matches(['=', '!', '~'])
            .trim()
            .trim_matches('"')
            .to_owned();
        out.push((label, value));
    }
    out
}

/// String literals in the source: where label values come from.
fn source_literals() -> String {
    fn walk(dir: &std::path::Path, out: &mut String) {
        for e in std::fs::read_dir(dir).expect("src").filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    let mut out = String::new();
    walk(&path("src"), &mut out);
    out
}

/// Checks one PromQL expression against what the node exports; returns the
/// labels of its result (for `$labels.X` in alert annotations).
fn check_promql(
    expr: &str,
    expo: &Exposition,
    src: &str,
    where_: &str,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut metrics = BTreeSet::new();
    let mut labels_available: BTreeSet<String> =
        ["job", "instance"].iter().map(|s| s.to_string()).collect();
    let mut labels_used = BTreeSet::new();
    for (pos, name) in identifiers(expr) {
        if !name.starts_with("herald_") {
            continue;
        }
        let labels = expo.samples.get(name).unwrap_or_else(|| {
            panic!(
                "{where_}: {name} is not exported by a running node (known: {:?})\n  in {expr}",
                expo.samples.keys().collect::<Vec<_>>()
            )
        });
        labels_available.extend(labels.iter().cloned());
        metrics.insert(name.to_owned());
        for (label, value) in matchers(expr, pos + name.len()) {
            labels_used.insert(label.clone());
            if labels.contains(&label) && !value.contains('$') {
                for v in value.split('|') {
                    assert!(
                        src.contains(&format!("\"{v}\"")),
                        "{where_}: {name}{{{label}=\"{v}\"}}: no such value in the code\n  in {expr}"
                    );
                }
            }
        }
    }
    let grouping = grouping_labels(expr);
    labels_used.extend(grouping.iter().cloned());
    for l in &labels_used {
        assert!(
            labels_available.contains(l),
            "{where_}: label {l} is not on {metrics:?}\n  in {expr}"
        );
    }
    if expr.contains("histogram_quantile") {
        assert!(
            metrics.iter().any(|m| m.ends_with("_bucket")) && grouping.iter().any(|l| l == "le"),
            "{where_}: histogram_quantile needs a _bucket series grouped by le\n  in {expr}"
        );
    }
    let mut result: BTreeSet<String> = if grouping.is_empty() {
        labels_available
    } else {
        grouping.into_iter().collect()
    };
    if expr.contains("histogram_quantile") {
        result.remove("le");
    }
    (metrics, result)
}

/// Metric names mentioned in free text: `herald_` followed by lowercase
/// letters, digits and underscores, not inside a longer word.
fn metric_mentions(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("herald_") {
        if text[..i].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        // `herald_(a|b)` in a grep pattern names no metric by itself.
        if !name.ends_with('_') {
            out.insert(name);
        }
    }
    out
}

/// `$name` variables in a Grafana expression (inside strings too).
fn variables(expr: &str) -> Vec<String> {
    expr.split('$')
        .skip(1)
        .map(|rest| rest.chars().take_while(|c| is_ident(*c)).collect())
        .filter(|v: &String| !v.is_empty())
        .collect()
}

fn grafana_exprs(panels: &[Json], out: &mut Vec<(String, String)>, ids: &mut Vec<i64>) {
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default().to_owned();
        if let Some(id) = p["id"].as_i64() {
            ids.push(id);
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!expr.is_empty(), "panel {title}: a target without expr");
            out.push((title.clone(), expr.to_owned()));
        }
        if let Some(inner) = p["panels"].as_array() {
            grafana_exprs(inner, out, ids);
        }
    }
}

#[tokio::test]
async fn grafana_dashboard_uses_real_metrics() {
    let (_redis, node, expo) = sampled_node().await;
    let src = source_literals();
    let dash: Json = serde_json::from_str(&read("deploy/grafana/herald.json"))
        .expect("deploy/grafana/herald.json is JSON");
    assert!(
        dash["uid"].is_string() && dash["title"].is_string(),
        "uid and title"
    );
    let mut exprs = Vec::new();
    let mut ids = Vec::new();
    grafana_exprs(
        dash["panels"].as_array().expect("panels"),
        &mut exprs,
        &mut ids,
    );
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "panel ids must be unique");
    let vars: BTreeSet<String> = dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(String::from))
        .collect();
    let mut used = BTreeSet::new();
    for (title, expr) in &exprs {
        let (metrics, _) = check_promql(expr, &expo, &src, &format!("Grafana panel {title:?}"));
        used.extend(metrics);
        for var in variables(expr) {
            assert!(
                var.starts_with("__") || vars.contains(&var),
                "panel {title:?} uses ${var}, which is not defined"
            );
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["definition"].as_str() {
            for (_, id) in identifiers(q) {
                if id.starts_with("herald_") {
                    assert!(expo.samples.contains_key(id), "variable query names {id}");
                }
            }
        }
    }
    for m in [
        "herald_sessions",
        "herald_users",
        "herald_deliveries_total",
        "herald_drops_total",
        "herald_refusals_total",
        "herald_closes_total",
        "herald_bus_up",
        "herald_bus_reconnects_total",
        "herald_publish_to_socket_seconds_bucket",
        "herald_invalid_envelopes_total",
    ] {
        assert!(used.contains(m), "the dashboard has no panel over {m}");
    }
    node.stop().await;
}

// ------------------------------------------------------------------- runbook

/// Fenced code blocks of a Markdown file: (info string, body).
fn code_blocks(md: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in md.lines() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```") {
            match current.take() {
                Some(block) => out.push(block),
                None => current = Some((info.trim().to_owned(), String::new())),
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

/// Splits shell text into simple commands (words), following quotes; the
/// commands inside `$(...)` come out as commands of their own.
fn shell_commands(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let mut commands = Vec::new();
    for line in joined.lines() {
        split_command_line(line, &mut commands);
    }
    commands.retain(|c| !c.is_empty());
    commands
}

fn split_command_line(line: &str, commands: &mut Vec<Vec<String>>) {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let flush = |words: &mut Vec<String>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    word.push(d);
                }
            }
            '"' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                word.push(e);
                            }
                        }
                        '$' if chars.peek() == Some(&'(') => {
                            chars.next();
                            let mut inner = String::new();
                            let mut depth = 1;
                            for e in chars.by_ref() {
                                match e {
                                    '(' => depth += 1,
                                    ')' => {
                                        depth -= 1;
                                        if depth == 0 {
                                            break;
                                        }
                                    }
                                    _ => {}
                                }
                                inner.push(e);
                            }
                            split_command_line(&inner, commands);
                            word.push_str("$SUBST");
                        }
                        _ => word.push(d),
                    }
                }
            }
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                flush(&mut words, &mut word, &mut in_word);
                commands.push(std::mem::take(&mut words));
            }
            ')' | '|' | ';' | '&' => {
                flush(&mut words, &mut word, &mut in_word);
                commands.push(std::mem::take(&mut words));
            }
            c if c.is_whitespace() => flush(&mut words, &mut word, &mut in_word),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    flush(&mut words, &mut word, &mut in_word);
    commands.push(words);
}

/// Drops leading `VAR=value` assignments.
fn program(cmd: &[String]) -> &[String] {
    let skip = cmd
        .iter()
        .take_while(|w| {
            w.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
        })
        .count();
    &cmd[skip..]
}

struct Curl {
    method: String,
    url: String,
    body: Option<String>,
}

fn parse_curl(args: &[String]) -> Curl {
    let mut method = None;
    let mut body = None;
    let mut url = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "-X" | "--request" => {
                method = args.get(i + 1).cloned();
                i += 1;
            }
            "-d" | "--data" | "--data-raw" => {
                body = args.get(i + 1).cloned();
                i += 1;
            }
            "-H" | "--header" | "-w" | "--write-out" | "-o" | "--output" | "-m" => i += 1,
            s if s.starts_with("http://") || s.starts_with("https://") => url = Some(s.to_owned()),
            _ => {}
        }
        i += 1;
    }
    let url = url.unwrap_or_else(|| panic!("curl without a URL: {args:?}"));
    let method = method.unwrap_or_else(|| {
        if body.is_some() {
            "POST".into()
        } else {
            "GET".into()
        }
    });
    Curl { method, url, body }
}

/// Replays a runbook `curl` against the test node: same method, path and
/// body; the listener chosen by the path. Returns the status.
async fn replay(curl: &Curl, node: &Herald) -> u16 {
    let after_scheme = curl.url.split_once("://").map(|x| x.1).unwrap_or_default();
    let path = after_scheme
        .find('/')
        .map(|i| &after_scheme[i..])
        .unwrap_or("/");
    // Shell variables in the path ($ID) stand for some id.
    let path: String = path
        .split('/')
        .map(|seg| {
            if seg.starts_with('$') {
                "runbook-id"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    let public = ["/healthz", "/v1/ws", "/dev/token", "/sdk/"]
        .iter()
        .any(|p| path.starts_with(p))
        || path == "/";
    let addr = if public { node.public } else { node.admin };
    let url = format!("http://{addr}{path}");
    let method: reqwest::Method = curl.method.parse().expect("HTTP method");
    let client = reqwest::Client::new();
    let mut status = 0;
    // A 503 can be a Redis bus reconnect in progress: retry those.
    for _ in 0..50 {
        let mut req = client.request(method.clone(), &url).bearer_auth(API_KEY);
        if let Some(b) = &curl.body {
            req = req
                .header("content-type", "application/json")
                .body(b.clone());
        }
        status = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} {url}: {e}", curl.method))
            .status()
            .as_u16();
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    status
}

#[tokio::test]
async fn runbook_matches_the_code() {
    let (_redis, node, expo) = sampled_node().await;
    let src = source_literals();
    let md = read("docs/OPERATIONS.md");

    // Every herald_* name in the text is a sample or a family the node exports.
    let mentions = metric_mentions(&md);
    assert!(mentions.len() >= 10, "OPERATIONS.md names the metrics");
    for name in &mentions {
        assert!(
            expo.samples.contains_key(name) || expo.families.contains(name),
            "OPERATIONS.md names {name}, which a running node does not export"
        );
    }

    let blocks = code_blocks(&md);
    // The alert rules: valid YAML, real metrics and labels.
    let rules_blocks: Vec<&String> = blocks
        .iter()
        .filter(|(info, body)| info == "yaml" && body.contains("groups:"))
        .map(|(_, b)| b)
        .collect();
    assert_eq!(
        rules_blocks.len(),
        1,
        "one Prometheus rules block in OPERATIONS.md"
    );
    let rules: Yaml = serde_norway::from_str(rules_blocks[0]).expect("the rules block is YAML");
    let mut alerts = 0;
    let mut alerted = BTreeSet::new();
    for group in seq(&rules["groups"], "groups") {
        for rule in seq(&group["rules"], "rules") {
            let name = str_of(&rule["alert"], "alert name");
            let expr = str_of(&rule["expr"], name);
            if let Some(f) = rule["for"].as_str() {
                duration(f, name);
            }
            assert!(
                rule["labels"]["severity"].is_string(),
                "{name}: a severity label"
            );
            let (metrics, result) = check_promql(expr, &expo, &src, &format!("alert {name}"));
            assert!(!metrics.is_empty(), "alert {name} uses no Herald metric");
            alerted.extend(metrics);
            for text in rule["annotations"]
                .as_mapping()
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(|v| v.as_str())
            {
                for part in text.split("$labels.").skip(1) {
                    let label: String = part.chars().take_while(|c| is_ident(*c)).collect();
                    assert!(
                        result.contains(&label),
                        "alert {name}: annotation uses $labels.{label}, not in the result of {expr}"
                    );
                }
            }
            alerts += 1;
        }
    }
    assert!(alerts >= 5, "a useful set of alerts");
    for m in ["herald_bus_up", "herald_sessions", "herald_drops_total"] {
        assert!(alerted.contains(m), "no alert on {m}");
    }
    for (info, body) in &blocks {
        if info == "promql" {
            for line in body.lines().filter(|l| !l.trim().is_empty()) {
                check_promql(line, &expo, &src, "OPERATIONS.md promql block");
            }
        }
    }

    // Commands: every herald flag exists; every curl endpoint answers 2xx.
    let mut curls = 0;
    let mut herald_cmds = 0;
    for (info, body) in &blocks {
        if info != "sh" {
            continue;
        }
        for cmd in shell_commands(body) {
            let prog = program(&cmd);
            match prog.first().map(String::as_str) {
                Some("herald") => {
                    let sub = prog.get(1).expect("herald subcommand");
                    assert_flags_exist(
                        sub,
                        &prog[2..],
                        &format!("OPERATIONS.md: {}", prog.join(" ")),
                    );
                    herald_cmds += 1;
                }
                Some("curl") => {
                    let curl = parse_curl(&prog[1..]);
                    let status = replay(&curl, &node).await;
                    assert!(
                        (200..300).contains(&status),
                        "OPERATIONS.md: `curl -X {} {}` answers {status} on a node",
                        curl.method,
                        curl.url
                    );
                    curls += 1;
                }
                _ => {}
            }
        }
    }
    assert!(
        herald_cmds >= 5,
        "the runbook's herald commands were found ({herald_cmds})"
    );
    assert!(
        curls >= 5,
        "the runbook's curl commands were found ({curls})"
    );
    node.stop().await;
}

/// The checks above can fail: a refused key, an unknown metric and a missing
/// flag are caught.
#[test]
fn the_checks_catch_mistakes() {
    let env = vec![("HERALD_REDIS__URLL".to_owned(), "redis://x".to_owned())];
    assert!(Config::load_from(None, &env, &Overrides::default()).is_err());
    let expo = parse_exposition(
        "# TYPE herald_drops counter\nherald_drops_total{reason=\"expired\"} 1\nherald_sessions 0\n",
    );
    let src = source_literals();
    let bad = [
        "rate(herald_drop_total[5m])",
        "sum by (source) (rate(herald_drops_total[5m]))",
        "herald_drops_total{reason=\"no_such_reason\"}",
        "histogram_quantile(0.9, rate(herald_sessions[5m]))",
    ];
    for expr in bad {
        let caught = std::panic::catch_unwind(|| check_promql(expr, &expo, &src, "test"));
        assert!(caught.is_err(), "not caught: {expr}");
    }
    check_promql(
        "sum by (reason) (rate(herald_drops_total{reason=~\"expired|slow_consumer\"}[5m]))",
        &expo,
        &src,
        "test",
    );
    let caught = std::panic::catch_unwind(|| {
        assert_flags_exist("broadcast", &["--titel".to_owned()], "test")
    });
    assert!(caught.is_err(), "a misspelt flag is caught");
    assert_flags_exist(
        "broadcast",
        &["--title".to_owned(), "--severity".to_owned()],
        "test",
    );
    let cmds = shell_commands(
        "ID=$(herald broadcast --title \"x y\") # c\ncurl -sS \"http://h/$(herald token --sub a)\" | grep x\n",
    );
    assert!(
        cmds.iter()
            .any(|c| c.starts_with(&["herald".to_owned(), "broadcast".to_owned()]))
    );
    assert!(
        cmds.iter()
            .any(|c| c.starts_with(&["herald".to_owned(), "token".to_owned()]))
    );
    assert!(cmds.iter().any(|c| c.first().is_some_and(|w| w == "curl")));
}
