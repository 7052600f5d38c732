//! The Dockerfile and the deployment examples under `examples/`: what they
//! refer to exists, their probes are portcullis' endpoints, and every
//! configuration they carry passes `portcullis check`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

use crate::cli::portcullis;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Dockerfile instructions with their `\` continuations joined.
fn dockerfile_instructions() -> Vec<String> {
    let text = read(&root().join("Dockerfile"));
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[test]
fn every_path_the_dockerfile_copies_exists_and_is_not_ignored() {
    let ignored: Vec<String> = read(&root().join(".dockerignore"))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim().trim_end_matches('/').to_owned())
        .collect();
    let instructions = dockerfile_instructions();
    let mut copied = Vec::new();
    for copy in instructions.iter().filter_map(|i| i.strip_prefix("COPY ")) {
        let words: Vec<&str> = copy.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from")) {
            continue;
        }
        let sources = &words[..words.len() - 1];
        for source in sources.iter().filter(|w| !w.starts_with("--")) {
            assert!(
                root().join(source).exists(),
                "COPY {source}: not in the repository"
            );
            assert!(
                !ignored
                    .iter()
                    .any(|i| source == i || source.starts_with(&format!("{i}/"))),
                "COPY {source}: excluded by .dockerignore"
            );
            copied.push(*source);
        }
    }
    assert!(
        copied.contains(&"Cargo.lock") && copied.contains(&"src"),
        "{copied:?}"
    );
}

#[test]
fn the_readme_shows_the_dockerfiles_build_command() {
    let build = dockerfile_instructions()
        .into_iter()
        .find_map(|i| i.find("cargo build").map(|at| i[at..].to_owned()))
        .expect("a cargo build in the Dockerfile");
    assert!(build.contains("--release --locked"), "{build}");
    let readme = read(&root().join("README.md"));
    assert!(
        readme.contains(&format!("`{build}`")),
        "README does not show `{build}`"
    );
    assert!(readme.contains("docker build -t portcullis ."));
    let instructions = dockerfile_instructions();
    let healthcheck = instructions
        .iter()
        .find(|i| i.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK");
    assert!(healthcheck.contains(r#""healthcheck"]"#), "{healthcheck}");
}

/// Every YAML document under `examples/`, with the file it came from.
fn yaml_documents() -> Vec<(PathBuf, Value)> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("examples"), &mut files);
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        for doc in serde_norway::Deserializer::from_str(&read(&file)) {
            let value =
                Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            docs.push((file.clone(), value));
        }
    }
    docs
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

/// Runs `portcullis check` on `config` with the files under `secret_dir`
/// (where the pod or compose mounts them) moved to a temporary directory that
/// holds a valid placeholder for each of `secret_names` and nothing else.
fn check_with_placeholder_secrets(
    name: &str,
    config: &str,
    secret_dir: &str,
    secret_names: &[String],
) {
    let dir =
        std::env::temp_dir().join(format!("portcullis-examples-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for secret in secret_names {
        let placeholder = if secret.contains("redis") {
            "redis://redis.example.svc:6379/0"
        } else {
            "placeholder-secret-0123456789abcdef0123456789"
        };
        std::fs::write(dir.join(secret), placeholder).unwrap();
    }
    let config = config.replace(secret_dir, &format!("{}/", dir.display()));
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let (code, out, err) = portcullis(&["check", "--config", &path.display().to_string()], &[]);
    assert_eq!(code, 0, "{name}: {err}");
    assert!(out.contains("[redacted]"), "{name}: {out}");
}

#[test]
fn kubernetes_examples_run_the_sidecar_with_probes_limits_and_a_checked_config() {
    let docs = yaml_documents();
    let mut files: BTreeMap<PathBuf, Vec<&Value>> = BTreeMap::new();
    for (file, doc) in &docs {
        if file.parent().is_some_and(|d| d.ends_with("kubernetes")) {
            files.entry(file.clone()).or_default().push(doc);
        }
    }
    assert!(files.len() >= 2, "{files:?}");
    let mut redis_replicas = Vec::new();
    for (file, docs) in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let of_kind = |kind: &str| -> Vec<&Value> {
            docs.iter()
                .copied()
                .filter(|d| str_at(d, &["kind"]) == Some(kind))
                .collect()
        };
        for kind in [
            "ConfigMap",
            "Secret",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
        ] {
            assert_eq!(of_kind(kind).len(), 1, "{name}: one {kind}");
        }
        // The Service name whose link variables portcullis must ignore.
        assert_eq!(
            str_at(of_kind("Service")[0], &["metadata", "name"]),
            Some("portcullis"),
            "{name}"
        );

        let deployment = of_kind("Deployment")[0];
        let pod = &deployment["spec"]["template"]["spec"];
        let containers = pod["containers"].as_sequence().expect("containers");
        assert_eq!(
            containers.len(),
            2,
            "{name}: the app and portcullis in one pod"
        );
        let sidecar = containers
            .iter()
            .find(|c| str_at(c, &["name"]) == Some("portcullis"))
            .unwrap_or_else(|| panic!("{name}: a container named portcullis"));
        // Probes and the Service reach portcullis' port, not the app's.
        let port = sidecar["ports"][0]["name"].as_str();
        assert_eq!(sidecar["ports"][0]["containerPort"].as_u64(), Some(4180));
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(str_at(sidecar, &[probe, "httpGet", "port"]), port, "{name}");
        }
        assert_eq!(
            str_at(
                of_kind("Service")[0]["spec"]["ports"].get(0).unwrap(),
                &["targetPort"]
            ),
            port,
            "{name}"
        );
        assert_eq!(
            str_at(sidecar, &["livenessProbe", "httpGet", "path"]),
            Some("/oauth2/healthz"),
            "{name}"
        );
        assert_eq!(
            str_at(sidecar, &["readinessProbe", "httpGet", "path"]),
            Some("/oauth2/readyz"),
            "{name}"
        );
        for key in [
            ["requests", "cpu"],
            ["requests", "memory"],
            ["limits", "memory"],
        ] {
            assert!(
                str_at(&sidecar["resources"], &key).is_some(),
                "{name}: resources.{key:?}"
            );
        }
        let security = &sidecar["securityContext"];
        assert_eq!(security["runAsNonRoot"].as_bool(), Some(true), "{name}");
        assert_eq!(
            security["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{name}"
        );
        assert_eq!(
            security["capabilities"]["drop"][0].as_str(),
            Some("ALL"),
            "{name}"
        );

        // The config in the ConfigMap passes `check`, with each secret file it
        // names taken from the Secret mounted where the pod mounts it.
        let config =
            str_at(of_kind("ConfigMap")[0], &["data", "config.toml"]).expect("config.toml");
        let secret_names: Vec<String> = of_kind("Secret")[0]["stringData"]
            .as_mapping()
            .expect("stringData")
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        let mounts = sidecar["volumeMounts"].as_sequence().expect("volumeMounts");
        let secret_volume = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v.get("secret").is_some())
            .and_then(|v| str_at(v, &["name"]))
            .expect("a Secret volume");
        let secret_dir = mounts
            .iter()
            .find(|m| str_at(m, &["name"]) == Some(secret_volume))
            .and_then(|m| str_at(m, &["mountPath"]))
            .expect("the Secret mounted");
        let config_volume = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v.get("configMap").is_some())
            .and_then(|v| str_at(v, &["name"]))
            .expect("a ConfigMap volume");
        let config_dir = mounts
            .iter()
            .find(|m| str_at(m, &["name"]) == Some(config_volume))
            .and_then(|m| str_at(m, &["mountPath"]))
            .expect("the ConfigMap mounted");
        let args: Vec<&str> = sidecar["args"]
            .as_sequence()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let config_path = format!("{config_dir}/config.toml");
        assert_eq!(args, ["--config", config_path.as_str(), "run"], "{name}");
        check_with_placeholder_secrets(&name, config, &format!("{secret_dir}/"), &secret_names);
        redis_replicas.push(
            config.contains("store = \"redis\"")
                && deployment["spec"]["replicas"].as_u64() == Some(3),
        );
    }
    assert!(
        redis_replicas.contains(&true),
        "a replicas: 3 variant with the Redis store"
    );
}

#[test]
fn the_compose_example_mounts_a_checked_config_read_only_and_secrets_from_files() {
    let (file, compose) = yaml_documents()
        .into_iter()
        .find(|(f, _)| f.ends_with("docker-compose.yml"))
        .expect("examples/docker-compose.yml");
    let services = &compose["services"];
    assert!(services.get("app").is_some());
    let portcullis_service = &services["portcullis"];
    let volume = portcullis_service["volumes"][0].as_str().expect("a volume");
    let [host, container, mode] = volume.split(':').collect::<Vec<_>>()[..] else {
        panic!("{volume}: host:container:ro");
    };
    assert_eq!((container, mode), ("/etc/portcullis/config.toml", "ro"));
    let config = read(&file.parent().unwrap().join(host));
    let secrets: Vec<String> = portcullis_service["secrets"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    for secret in &secrets {
        assert!(
            compose["secrets"][secret.as_str()]["file"].is_string(),
            "{secret} from a file"
        );
    }
    check_with_placeholder_secrets("compose", &config, "/run/secrets/", &secrets);
}
