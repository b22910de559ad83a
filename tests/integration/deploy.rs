//! The deployment files: plain Kubernetes manifests, the Helm chart, the Dockerfile, the
//! KubeSphere configuration generated from the shipped example, and the configuration examples
//! in docs/. None of this needs a cluster: manifests are parsed and cross-checked, and every
//! idbridge configuration they carry is run through `idbridge check-config`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use idbridge::config::Config;
use idbridge::kubesphere::{KsVersion, identity_provider_yaml};
use serde::Deserialize;
use serde_yaml_ng::Value;

const BIN: &str = env!("CARGO_BIN_EXE_idbridge");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a (possibly multi-document) YAML file; empty documents are skipped.
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

/// The value at a dotted path (`spec.template.spec`); numeric segments index sequences.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[key],
        })
}

fn str_at<'a>(value: &'a Value, path: &str) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string in {value:#?}"))
}

fn u64_at(value: &Value, path: &str) -> u64 {
    at(value, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{path} is not a number in {value:#?}"))
}

fn seq_at<'a>(value: &'a Value, path: &str) -> &'a Vec<Value> {
    at(value, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("{path} is not a list in {value:#?}"))
}

fn find_by_name<'a>(items: &'a [Value], name: &str) -> &'a Value {
    items
        .iter()
        .find(|item| item["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no item named {name} in {items:#?}"))
}

/// The port of a `host:port` listen address.
fn listen_port(addr: &str) -> u64 {
    addr.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("not host:port: {addr}"))
}

/// Runs `idbridge check-config` on `text` with the given environment; panics with the output
/// when the configuration is refused.
fn check_config(label: &str, text: &str, env: &BTreeMap<String, String>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, text).unwrap();
    let output = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&file)
        .env_remove("IDBRIDGE_CONFIG")
        .envs(env)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{label}: check-config refused the configuration:\n{}\n--- configuration ---\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Stand-in values for every environment variable a configuration names through a key ending
/// in `Env` (secretEnv, clientSecretEnv, urlEnv...).
fn referenced_env(config: &Value) -> BTreeMap<String, String> {
    fn walk(value: &Value, out: &mut BTreeMap<String, String>) {
        match value {
            Value::Mapping(map) => {
                for (key, value) in map {
                    let key = key.as_str().unwrap_or_default();
                    if key.ends_with("Env")
                        && let Some(name) = value.as_str()
                    {
                        let stand_in = if key == "urlEnv" {
                            "postgres://idbridge:pw@db:5432/idbridge"
                        } else {
                            "a-long-random-test-secret"
                        };
                        out.insert(name.to_string(), stand_in.to_string());
                    }
                    walk(value, out);
                }
            }
            Value::Sequence(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk(config, &mut out);
    out
}

#[test]
fn kubernetes_manifests_parse_and_fit_together() {
    let dir = root().join("deploy/kubernetes");
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut listed_files = Vec::new();
    for file in yaml_files(&dir) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for doc in documents(&file) {
            let kind = str_at(&doc, "kind").to_string();
            if kind == "Kustomization" {
                listed_files = seq_at(&doc, "resources")
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect();
                continue;
            }
            assert!(doc["apiVersion"].is_string(), "{name}: no apiVersion");
            assert!(!str_at(&doc, "metadata.name").is_empty(), "{name}");
            if kind != "Namespace" {
                assert_eq!(str_at(&doc, "metadata.namespace"), "idbridge", "{name}");
            }
            by_kind.entry(kind).or_default().push(doc);
        }
    }
    let one = |kind: &str| -> &Value {
        let docs = by_kind
            .get(kind)
            .unwrap_or_else(|| panic!("no {kind} under deploy/kubernetes"));
        assert_eq!(docs.len(), 1, "one {kind} expected");
        &docs[0]
    };
    for kind in ["Namespace", "ConfigMap", "Secret", "Deployment", "Service"] {
        one(kind);
    }

    // kubectl apply -k applies everything but the example Secret.
    let mut expected: Vec<String> = yaml_files(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "kustomization.yaml" && n != "secret.example.yaml")
        .collect();
    expected.sort();
    listed_files.sort();
    assert_eq!(listed_files, expected, "kustomization.yaml resources");

    let configmap = one("ConfigMap");
    let config_text = at(configmap, "data")["config.yaml"].as_str().unwrap();
    let config: Value = serde_yaml_ng::from_str(config_text).unwrap();
    let secret = one("Secret");
    let secret_keys: BTreeMap<String, String> = at(secret, "stringData")
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_string(),
                v.as_str().unwrap().to_string(),
            )
        })
        .collect();
    for name in referenced_env(&config).keys() {
        assert!(
            secret_keys.contains_key(name),
            "the configuration reads {name}, which secret.example.yaml does not define"
        );
    }
    check_config(
        "deploy/kubernetes/configmap.yaml",
        config_text,
        &secret_keys,
    );
    let db_file = str_at(&config, "storage.config.file");
    assert!(db_file.starts_with("/var/lib/idbridge/"), "{db_file}");

    let deployment = one("Deployment");
    assert_eq!(u64_at(deployment, "spec.replicas"), 1);
    assert_eq!(str_at(deployment, "spec.strategy.type"), "Recreate");
    let pod_labels = at(deployment, "spec.template.metadata.labels");
    assert_eq!(at(deployment, "spec.selector.matchLabels"), pod_labels);
    let pod = at(deployment, "spec.template.spec");
    check_pod(pod, &config);

    let volumes = seq_at(pod, "volumes");
    assert_eq!(
        str_at(find_by_name(volumes, "config"), "configMap.name"),
        str_at(configmap, "metadata.name")
    );
    assert_eq!(
        str_at(
            find_by_name(volumes, "data"),
            "persistentVolumeClaim.claimName"
        ),
        str_at(one("PersistentVolumeClaim"), "metadata.name")
    );
    let container = &seq_at(pod, "containers")[0];
    assert_eq!(
        str_at(container, "envFrom.0.secretRef.name"),
        str_at(secret, "metadata.name")
    );

    let service = one("Service");
    assert_eq!(at(service, "spec.selector"), pod_labels);
    let container_ports: Vec<&str> = seq_at(container, "ports")
        .iter()
        .map(|p| str_at(p, "name"))
        .collect();
    for port in seq_at(service, "spec.ports") {
        let target = str_at(port, "targetPort");
        assert!(
            container_ports.contains(&target),
            "service targets {target}"
        );
    }
}

/// What every idbridge pod must look like, whoever wrote it: non-root, read-only root
/// filesystem, probes on the telemetry listener, ports matching the configuration, the data
/// directory and /tmp writable.
fn check_pod(pod: &Value, config: &Value) {
    assert_eq!(at(pod, "securityContext.runAsNonRoot"), &Value::Bool(true));
    assert_eq!(u64_at(pod, "securityContext.runAsUser"), 65532);
    assert_eq!(u64_at(pod, "securityContext.fsGroup"), 65532);
    let containers = seq_at(pod, "containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert_eq!(
        at(container, "securityContext.readOnlyRootFilesystem"),
        &Value::Bool(true)
    );
    assert_eq!(
        at(container, "securityContext.allowPrivilegeEscalation"),
        &Value::Bool(false)
    );
    assert_eq!(
        seq_at(container, "args"),
        &["serve", "--config", "/etc/idbridge/config.yaml"]
            .map(|s| Value::String(s.into()))
            .to_vec()
    );

    let ports = seq_at(container, "ports");
    let port_of = |name: &str| u64_at(find_by_name(ports, name), "containerPort");
    assert_eq!(port_of("http"), listen_port(str_at(config, "web.http")));
    assert_eq!(
        port_of("telemetry"),
        listen_port(str_at(config, "telemetry.http"))
    );
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = at(container, &format!("{probe}.httpGet"));
        assert_eq!(str_at(get, "path"), path, "{probe}");
        assert_eq!(str_at(get, "port"), "telemetry", "{probe}");
    }
    assert!(at(container, "resources.requests").is_mapping());
    assert!(at(container, "resources.limits.memory").is_string());

    let mounts: BTreeMap<&str, &str> = seq_at(container, "volumeMounts")
        .iter()
        .map(|m| (str_at(m, "mountPath"), str_at(m, "name")))
        .collect();
    for path in ["/etc/idbridge", "/var/lib/idbridge", "/tmp"] {
        assert!(
            mounts.contains_key(path),
            "{path} is not mounted: {mounts:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Helm

fn chart_dir() -> PathBuf {
    root().join("deploy/helm/idbridge")
}

fn values_file(name: &str) -> Value {
    let docs = documents(&chart_dir().join(name));
    assert_eq!(docs.len(), 1, "{name}");
    docs.into_iter().next().unwrap()
}

/// Helm's merge of a values file over the chart's values: maps merge key by key, anything else
/// replaces, and a null deletes the key.
fn helm_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (key, value) in over {
                if value.is_null() {
                    base.remove(key);
                } else if let Some(existing) = base.get_mut(key)
                    && existing.is_mapping()
                    && value.is_mapping()
                {
                    helm_merge(existing, value);
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}

fn merged_values(extra: Option<&str>) -> Value {
    let mut values = values_file("values.yaml");
    if let Some(name) = extra {
        helm_merge(&mut values, &values_file(name));
    }
    values
}

#[test]
fn helm_values_files_give_valid_configurations() {
    for extra in [
        None,
        Some("values-sqlite.yaml"),
        Some("values-postgres.yaml"),
    ] {
        let label = extra.unwrap_or("values.yaml");
        let values = merged_values(extra);
        let config = at(&values, "config");
        let text = serde_yaml_ng::to_string(config).unwrap();
        check_config(label, &text, &referenced_env(config));
        assert_eq!(
            u64_at(&values, "ports.http"),
            listen_port(str_at(config, "web.http")),
            "{label}"
        );
        assert_eq!(
            u64_at(&values, "ports.telemetry"),
            listen_port(str_at(config, "telemetry.http")),
            "{label}"
        );
        assert!(!str_at(&values, "existingSecret").is_empty(), "{label}");
    }

    let sqlite = merged_values(Some("values-sqlite.yaml"));
    assert_eq!(u64_at(&sqlite, "replicaCount"), 1);
    assert_eq!(str_at(&sqlite, "strategy.type"), "Recreate");
    assert_eq!(at(&sqlite, "persistence.enabled"), &Value::Bool(true));
    assert_eq!(at(&sqlite, "autoscaling.enabled"), &Value::Bool(false));
    assert_eq!(str_at(&sqlite, "config.storage.type"), "sqlite");
    assert!(str_at(&sqlite, "config.storage.config.file").starts_with("/var/lib/idbridge/"));
    // The defaults are the SQLite setup.
    assert_eq!(merged_values(None), {
        let mut v = merged_values(None);
        helm_merge(&mut v, &values_file("values-sqlite.yaml"));
        v
    });

    let postgres = merged_values(Some("values-postgres.yaml"));
    assert_eq!(u64_at(&postgres, "replicaCount"), 3);
    assert_eq!(at(&postgres, "persistence.enabled"), &Value::Bool(false));
    assert_eq!(at(&postgres, "autoscaling.enabled"), &Value::Bool(true));
    assert!(u64_at(&postgres, "autoscaling.minReplicas") >= 2);
    assert_eq!(
        at(&postgres, "podDisruptionBudget.enabled"),
        &Value::Bool(true)
    );
    assert_eq!(u64_at(&postgres, "podDisruptionBudget.minAvailable"), 1);
    assert_eq!(str_at(&postgres, "config.storage.type"), "postgres");
    assert_eq!(
        str_at(&postgres, "config.storage.config.urlEnv"),
        "IDBRIDGE_DATABASE_URL"
    );
    assert!(at(&postgres, "config.storage.config.file").is_null());
}

/// Without Helm, at least every value a template reads must exist in values.yaml (a typo
/// renders as an empty string, silently), and the template actions must be balanced.
#[test]
fn helm_templates_read_only_defined_values() {
    let chart = documents(&chart_dir().join("Chart.yaml")).remove(0);
    assert_eq!(str_at(&chart, "apiVersion"), "v2");
    assert_eq!(str_at(&chart, "name"), "idbridge");
    assert_eq!(str_at(&chart, "appVersion"), env!("CARGO_PKG_VERSION"));

    let values = values_file("values.yaml");
    let templates = chart_dir().join("templates");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&templates)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let kinds: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "ingress.yaml",
        "pvc.yaml",
        "hpa.yaml",
        "pdb.yaml",
        "servicemonitor.yaml",
    ] {
        assert!(kinds.iter().any(|k| k == expected), "missing {expected}");
    }
    for file in &files {
        let text = read(file);
        let name = file.display();
        assert_eq!(
            text.matches("{{").count(),
            text.matches("}}").count(),
            "{name}: unbalanced braces"
        );
        let opens = ["if ", "with ", "range "]
            .iter()
            .map(|kw| {
                text.matches(&format!("{{{{- {kw}")).count()
                    + text.matches(&format!("{{{{ {kw}")).count()
            })
            .sum::<usize>();
        let ends = text.matches("{{- end }}").count() + text.matches("{{ end }}").count();
        assert_eq!(opens, ends, "{name}: if/with/range without end");
        let mut rest = text.as_str();
        while let Some(start) = rest.find(".Values.") {
            let after = &rest[start + ".Values.".len()..];
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
                .unwrap_or(after.len());
            let path = after[..len].trim_end_matches('.');
            let mut node = &values;
            for key in path.split('.') {
                node = node
                    .as_mapping()
                    .and_then(|m| m.get(key))
                    .unwrap_or_else(|| panic!("{name}: .Values.{path} is not in values.yaml"));
            }
            rest = &after[len..];
        }
    }
}

/// Renders the chart when Helm is installed (it is not a Debian package, so often it is not):
/// every values file, with the optional objects switched on, must give the objects expected.
#[test]
fn helm_renders_every_values_file_when_helm_is_installed() {
    let Ok(version) = Command::new("helm").arg("version").arg("--short").output() else {
        eprintln!(
            "helm is not installed: rendering skipped, values and templates checked statically"
        );
        return;
    };
    assert!(version.status.success());
    let lint = Command::new("helm")
        .arg("lint")
        .arg(chart_dir())
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
    for file in ["values.yaml", "values-sqlite.yaml", "values-postgres.yaml"] {
        let output = Command::new("helm")
            .args(["template", "idb"])
            .arg(chart_dir())
            .arg("-f")
            .arg(chart_dir().join(file))
            .args([
                "--set",
                "ingress.enabled=true",
                "--set",
                "serviceMonitor.enabled=true",
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .collect();
        let kinds: Vec<&str> = docs.iter().map(|d| str_at(d, "kind")).collect();
        for kind in [
            "ConfigMap",
            "Deployment",
            "Service",
            "Ingress",
            "ServiceMonitor",
        ] {
            assert!(kinds.contains(&kind), "{file}: no {kind} in {kinds:?}");
        }
        let postgres = file == "values-postgres.yaml";
        assert_eq!(
            kinds.contains(&"PersistentVolumeClaim"),
            !postgres,
            "{file}"
        );
        assert_eq!(
            kinds.contains(&"HorizontalPodAutoscaler"),
            postgres,
            "{file}"
        );
        assert_eq!(kinds.contains(&"PodDisruptionBudget"), postgres, "{file}");
        let configmap = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
        let config: Value =
            serde_yaml_ng::from_str(at(configmap, "data")["config.yaml"].as_str().unwrap())
                .unwrap();
        let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
        check_pod(at(deployment, "spec.template.spec"), &config);
    }
}

#[test]
fn dockerfile_builds_a_non_root_image_with_the_expected_entrypoint() {
    let text = read(&root().join("deploy/Dockerfile"));
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for expected in [
        "FROM rust:1-bookworm AS build",
        "FROM debian:bookworm-slim",
        "USER 65532:65532",
        "EXPOSE 5556",
        "ENTRYPOINT [\"idbridge\"]",
        "CMD [\"serve\", \"--config\", \"/etc/idbridge/config.yaml\"]",
        "COPY --from=build /out/idbridge /usr/local/bin/idbridge",
    ] {
        assert!(lines.contains(&expected), "Dockerfile lacks {expected:?}");
    }
    assert!(text.contains("cargo build --release --locked"));
    // Everything compiled into the binary must be in the build context.
    let ignore = read(&root().join(".dockerignore"));
    for dir in ["src", "templates", "static", "migrations", "Cargo.lock"] {
        assert!(text.contains(&format!("COPY {dir}")) || text.contains(&format!("{dir} ")));
        assert!(ignore.lines().any(|l| l == format!("!{dir}")), "{dir}");
    }
}

// ---------------------------------------------------------------------------------------------
// KubeSphere and the documentation

#[test]
fn kubesphere_config_from_the_example_has_what_kubesphere_reads() {
    let config = Config::load(&root().join("config/example.yaml")).unwrap();
    let console = "https://ks.example.com";
    let v3 =
        identity_provider_yaml(&config, "kubesphere", console, KsVersion::V3, "idbridge").unwrap();
    let v3: Value = serde_yaml_ng::from_str(&v3).unwrap();
    let v3_idp = at(&v3, "spec.authentication.oauthOptions.identityProviders.0").clone();

    let v4 =
        identity_provider_yaml(&config, "kubesphere", console, KsVersion::V4, "idbridge").unwrap();
    let v4: Value = serde_yaml_ng::from_str(&v4).unwrap();
    assert_eq!(str_at(&v4, "type"), "config.kubesphere.io/identityprovider");
    assert_eq!(str_at(&v4, "metadata.namespace"), "kubesphere-system");
    assert_eq!(
        at(&v4, "metadata.labels")["config.kubesphere.io/type"].as_str(),
        Some("identityprovider")
    );
    let v4_idp: Value = serde_yaml_ng::from_str(
        at(&v4, "stringData")["configuration.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();

    for idp in [&v3_idp, &v4_idp] {
        assert_eq!(str_at(idp, "name"), "idbridge");
        assert_eq!(str_at(idp, "type"), "OIDCIdentityProvider");
        assert_eq!(str_at(idp, "provider.issuer"), config.issuer);
        assert_eq!(str_at(idp, "provider.clientID"), "kubesphere");
        assert_eq!(
            str_at(idp, "provider.clientSecret"),
            config.static_clients[0].secret.as_deref().unwrap()
        );
        assert_eq!(
            str_at(idp, "provider.redirectURL"),
            "https://ks.example.com/oauth/redirect/idbridge"
        );
        assert_eq!(
            seq_at(idp, "provider.scopes"),
            &["openid", "profile", "email"]
                .map(|s| Value::String(s.into()))
                .to_vec()
        );
    }
}

/// The ```yaml blocks of a Markdown file, with the indentation of their fence removed (blocks
/// inside list items are indented).
fn yaml_blocks(name: &str, text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match &mut open {
            None if trimmed == "```yaml" => {
                open = Some((line.len() - trimmed.len(), String::new()));
            }
            None => {}
            Some((_, block)) if trimmed == "```" => {
                blocks.push(std::mem::take(block));
                open = None;
            }
            Some((indent, block)) => {
                let cut = line.len().min(*indent);
                assert!(
                    line[..cut].trim().is_empty(),
                    "{name}: a line of a YAML block is less indented than its fence: {line:?}"
                );
                block.push_str(&line[cut..]);
                block.push('\n');
            }
        }
    }
    assert!(open.is_none(), "{name}: a YAML block is not closed");
    blocks
}

/// Every complete idbridge configuration in docs/ (a ```yaml block starting with `issuer:`)
/// is accepted by `idbridge check-config`, and every other YAML block parses.
#[test]
fn configuration_examples_in_the_docs_pass_check_config() {
    let mut checked = 0;
    for name in [
        "kubesphere.md",
        "grafana.md",
        "harbor.md",
        "argocd.md",
        "kubectl.md",
        "operations.md",
    ] {
        let text = read(&root().join("docs").join(name));
        let mut configs_in_file = 0;
        for block in yaml_blocks(name, &text) {
            for doc in serde_yaml_ng::Deserializer::from_str(&block) {
                Value::deserialize(doc).unwrap_or_else(|e| {
                    panic!("{name}: a YAML block does not parse: {e}\n{block}")
                });
            }
            if block.starts_with("issuer:") {
                let config: Value = serde_yaml_ng::from_str(&block).unwrap();
                check_config(name, &block, &referenced_env(&config));
                configs_in_file += 1;
            }
        }
        assert!(
            configs_in_file > 0,
            "{name} has no idbridge configuration example"
        );
        checked += configs_in_file;
    }
    assert!(checked >= 6);
}
