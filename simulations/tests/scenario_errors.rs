//! A bad scenario file gives an error naming the key and the expected form.

use modchain_sim::scenario::Scenario;

const GOOD: &str = r#"
name = "t"
duration = "10m"

[[peers]]
name = "o"
count = 1
candidate = true
"#;

fn error(text: &str) -> String {
    match Scenario::parse(text, "test.toml") {
        Ok(_) => panic!("scenario should have been refused:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_minimal_scenario_loads() {
    assert!(Scenario::parse(GOOD, "test.toml").is_ok());
}

#[test]
fn every_shipped_scenario_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("scenarios dir") {
        let path = entry.expect("entry").path();
        if let Err(e) = Scenario::load(&path) {
            panic!("{e}");
        }
        n += 1;
    }
    assert!(n >= 5, "only {n} scenarios shipped");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let e = error(&format!("{GOOD}\nbogus_key = 3\n"));
    assert!(e.contains("bogus_key"), "{e}");
    assert!(e.contains("line"), "{e}");
    let e = error(&GOOD.replace("count = 1", "count = 1\ncpus = 4"));
    assert!(
        e.contains("cpus") && e.contains("cores"),
        "should list the known keys: {e}"
    );
}

#[test]
fn a_bad_duration_names_the_expected_form() {
    let e = error(&GOOD.replace("\"10m\"", "\"ten minutes\""));
    assert!(e.contains("duration"), "{e}");
    assert!(e.contains("\"30s\""), "should show the expected form: {e}");
}

#[test]
fn a_bad_size_and_rate_name_the_expected_form() {
    let e = error(&GOOD.replace("candidate = true", "candidate = true\nmemory = \"lots\""));
    assert!(e.contains("memory") && e.contains("GiB"), "{e}");
    let e = error(&format!("{GOOD}\n[workload]\nrate = \"often\"\n"));
    assert!(e.contains("rate") && e.contains("/s"), "{e}");
}

#[test]
fn unknown_fault_kind_lists_the_known_ones() {
    let e = error(&format!(
        "{GOOD}\n[[faults]]\nat = \"1m\"\nkind = \"meteor\"\n"
    ));
    assert!(e.contains("meteor") && e.contains("partition"), "{e}");
}

#[test]
fn semantic_errors_name_the_key() {
    let e = error(&GOOD.replace("candidate = true", "candidate = true\nregions = [\"mars\"]"));
    assert!(e.contains("peers[0].regions") && e.contains("mars"), "{e}");
    let e = error(&format!(
        "{GOOD}\n[[faults]]\nat = \"1m\"\nkind = \"partition\"\ngroups = [[\"moon\"]]\n"
    ));
    assert!(e.contains("faults[0].groups"), "{e}");
    let e = error(&GOOD.replace("candidate = true", "candidate = false"));
    assert!(e.contains("candidate"), "{e}");
    let e = error(&format!(
        "{GOOD}\n[network]\nregions = [{{ name = \"a\" }}, {{ name = \"b\" }}]\n"
    ));
    assert!(e.contains("network.latency_ms.a"), "{e}");
}
