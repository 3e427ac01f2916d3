//! The settings tree against what is written of it: the reference in `docs/configuration.md`
//! and `deploy/qfrefund.example.toml` are generated from it (`UPDATE_DOCS=1` writes them), and
//! every variable the deployment files set is a declared setting whose value reads.

use std::path::PathBuf;

use super::{Kind, declared, render};

const BEGIN: &str = "<!-- settings:begin (generated: UPDATE_DOCS=1 cargo test -p qfrefund settings) -->\n";
const END: &str = "<!-- settings:end -->";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `path` as it should be; with `UPDATE_DOCS=1`, written so.
fn check_generated(path: &str, want: &str) {
    let file = root().join(path);
    let have = std::fs::read_to_string(&file).unwrap_or_default();
    if std::env::var("UPDATE_DOCS").is_ok() {
        std::fs::write(&file, want).unwrap();
    } else {
        assert!(
            have == want,
            "{path} is not what the settings tree generates: run UPDATE_DOCS=1 cargo test -p qfrefund settings"
        );
    }
}

#[test]
fn the_reference_and_the_example_file_are_generated_from_the_tree() {
    let doc = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let (head, rest) = doc.split_once(BEGIN).expect("docs/configuration.md has the settings:begin marker");
    let (_, tail) = rest.split_once(END).expect("and the settings:end marker");
    check_generated("docs/configuration.md", &format!("{head}{BEGIN}{}{END}{tail}", render::reference_table()));
    check_generated("deploy/qfrefund.example.toml", &render::example_toml());
}

#[test]
fn environment_names_follow_one_rule() {
    // QFREFUND_ + the key, with the section's name before it but for [worker] (whose settings are
    // the process's own); the default merchant's QFPay credentials are QFPAY_ + the key.
    for d in declared() {
        let f = d.field;
        if f.env.is_empty() {
            continue;
        }
        let want = match d.path.split_once('.') {
            None => format!("QFREFUND_{}", f.key.to_uppercase()),
            Some(("worker", _)) if f.key == "name" => "QFREFUND_WORKER_NAME".into(),
            Some(("worker", _)) => format!("QFREFUND_{}", f.key.to_uppercase()),
            Some(("api", _)) => format!("QFREFUND_API_{}", f.key.to_uppercase()),
            Some(_) if f.key.starts_with("webhook_") => format!("QFREFUND_{}", f.key.to_uppercase()),
            Some(_) => format!("QFPAY_{}", f.key.to_uppercase()),
        };
        assert_eq!(f.env, want, "{}", d.path);
        assert!(!f.doc.trim().is_empty(), "{} says what it is", d.path);
    }
}

#[test]
fn the_configmap_sets_only_declared_settings_and_each_value_reads() {
    let text = std::fs::read_to_string(root().join("deploy/k8s/configmap.yaml")).unwrap();
    let data = text.split("\ndata:\n").nth(1).expect("a data: section");
    let mut seen = 0;
    for line in data.lines().filter(|l| l.starts_with("  ") && !l.trim_start().starts_with('#')) {
        let (name, value) = line.trim().split_once(": ").unwrap_or_else(|| panic!("{line}"));
        let value = value.trim().trim_matches('"');
        seen += 1;
        // Read before the configuration, by the logging set-up.
        if ["RUST_LOG", "QFREFUND_LOG_FORMAT"].contains(&name) {
            continue;
        }
        let d = declared().into_iter().find(|d| d.field.env == name);
        let d = d.unwrap_or_else(|| panic!("the ConfigMap sets {name}, which no setting reads"));
        assert!(d.field.kind != Kind::Secret, "{name} is a secret: it belongs in the Secret, not the ConfigMap");
        super::layers::parse(d.field.kind, name, value).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(seen > 10, "the ConfigMap's data was read: {seen}");
}

#[test]
fn the_example_file_uncommented_is_a_valid_configuration() {
    let uncommented: String = render::example_toml()
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')) =>
            {
                rest.split("  # ").next().unwrap_or(rest)
            }
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let s: super::Settings = toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    assert_eq!(s.worker.lease_ms, super::WorkerSettings::default().lease_ms);
    assert!(s.merchants.contains_key("default"));
}

#[test]
fn every_variable_the_deployment_files_name_is_read() {
    let mut files = vec![root().join("deploy/compose.yaml"), root().join("deploy/run-local.sh")];
    for entry in std::fs::read_dir(root().join("deploy/k8s")).unwrap() {
        files.push(entry.unwrap().path());
    }
    let read_first = ["QFREFUND_CONFIG", "QFREFUND_SECRETS_DIR", "QFREFUND_LOG_FORMAT", "QFREFUND_MERCHANT"];
    // Read by docker compose itself (`${QFREFUND_IMAGE:-…}`), not by qfrefund.
    let compose_own = ["QFREFUND_IMAGE", "QFREFUND_DEMO_TOKEN"];
    // Read by `make` and the test harness (which redis-server to start), not by qfrefund.
    let harness_own = ["QFREFUND_REDIS_SERVER"];
    let mut seen = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices("QF") {
            let tail = &text[i..];
            let name: String =
                tail.chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
            let name = name.trim_end_matches('_');
            if !(name.starts_with("QFREFUND_") || name.starts_with("QFPAY_")) {
                continue;
            }
            seen += 1;
            let declared = declared().into_iter().any(|d| d.field.env == name || d.field.aliases.contains(&name));
            assert!(
                declared || read_first.contains(&name) || compose_own.contains(&name) || harness_own.contains(&name),
                "{} names {name}, which nothing reads",
                file.display()
            );
        }
    }
    assert!(seen > 20, "the deployment files were read: {seen}");
}
