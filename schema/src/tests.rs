use super::*;
use serde_json::json;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
        .expect("literal timestamp")
        .with_timezone(&Utc)
}

fn good_prediction() -> Value {
    json!({
        "system_id": "credit-scoring",
        "model_version": "3.1.0",
        "prediction_id": "req-42",
        "timestamp": "2026-11-23T11:00:00+01:00",
        "features": {"age": 41, "region": "north", "employed": true, "income": null},
        "prediction": {"score": 0.83, "label": 1},
        "segment": {"channel": "web"}
    })
}

#[test]
fn valid_prediction_is_normalised() {
    let p = parse_prediction(good_prediction(), now()).expect("valid");
    assert_eq!(p.system_id, "credit-scoring");
    assert_eq!(p.timestamp.to_rfc3339(), "2026-11-23T10:00:00+00:00");
    assert_eq!(p.prediction.label.as_deref(), Some("1"));
    assert_eq!(p.features["age"], FeatureValue::Number(41.0));
    assert_eq!(p.features["employed"], FeatureValue::Bool(true));
    assert_eq!(p.features["income"], FeatureValue::Null);
    assert_eq!(p.v, WIRE_VERSION);
}

#[test]
fn missing_timestamp_and_event_id_are_filled_in() {
    let mut v = good_prediction();
    v.as_object_mut().expect("object").remove("timestamp");
    let a = parse_prediction(v.clone(), now()).expect("valid");
    let b = parse_prediction(v, now()).expect("valid");
    assert_eq!(a.timestamp, now());
    assert_ne!(a.event_id, b.event_id, "each event gets its own id");
}

fn field_error(v: Value) -> FieldError {
    parse_event(v, now()).expect_err("must be rejected")
}

#[test]
fn errors_name_the_field_and_what_was_expected() {
    let mut v = good_prediction();
    v["features"]["age"] = json!({"years": 41});
    let e = field_error(v);
    assert_eq!(e.field, "features.age");
    assert_eq!(
        e.to_string(),
        "features.age: expected a number, string, boolean or null, found an object"
    );

    let mut v = good_prediction();
    v["prediction"]["score"] = json!("high");
    assert_eq!(
        field_error(v).to_string(),
        "prediction.score: expected a finite number, found string \"high\""
    );

    let mut v = good_prediction();
    v.as_object_mut().expect("object").remove("system_id");
    let e = field_error(v);
    assert_eq!(e.field, "system_id");
    assert_eq!(e.found, "nothing (field is missing)");

    let mut v = good_prediction();
    v["system_id"] = json!("credit scoring/v2");
    assert_eq!(field_error(v).field, "system_id");

    let mut v = good_prediction();
    v["timestamp"] = json!("yesterday");
    assert_eq!(field_error(v).field, "timestamp");

    let mut v = good_prediction();
    v["prediction"] = json!({});
    assert_eq!(
        field_error(v).to_string(),
        "prediction: expected at least one of score, label, value, found none of them"
    );

    let mut v = good_prediction();
    v["feature"] = json!({});
    let e = field_error(v);
    assert_eq!(e.field, "feature");
    assert!(e.expected.contains("known fields"), "{e}");
}

#[test]
fn outcome_accepts_shorthand_and_object() {
    let base = json!({"system_id": "s", "prediction_id": "p1", "outcome": "default"});
    let Event::Outcome(o) = parse_event(base, now()).expect("valid") else {
        panic!("expected an outcome");
    };
    assert_eq!(o.outcome.label.as_deref(), Some("default"));
    let o = parse_outcome(
        json!({"system_id": "s", "prediction_id": "p1", "outcome": {"value": 2.5}}),
        now(),
    )
    .expect("valid");
    assert_eq!(o.outcome.value, Some(2.5));
    let e = parse_outcome(
        json!({"system_id": "s", "prediction_id": "p1", "outcome": [1]}),
        now(),
    )
    .expect_err("array outcome");
    assert_eq!(e.field, "outcome");
}

#[test]
fn wire_round_trip_keeps_everything() {
    let event = Event::Prediction(parse_prediction(good_prediction(), now()).expect("valid"));
    let bytes = event.to_wire();
    let text = String::from_utf8(bytes.clone()).expect("utf8");
    assert!(
        text.starts_with("{\"kind\":\"prediction\",\"v\":1,"),
        "{text}"
    );
    assert_eq!(Event::from_wire(&bytes).expect("decodes"), event);
    // The wire form is itself valid input (files written from the topic can be replayed).
    let again = parse_event(serde_json::from_slice(&bytes).expect("json"), now()).expect("valid");
    assert_eq!(again, event);
}

#[test]
fn wire_rejects_other_versions() {
    let mut v: Value = serde_json::from_slice(
        &Event::Prediction(parse_prediction(good_prediction(), now()).expect("valid")).to_wire(),
    )
    .expect("json");
    v["v"] = json!(2);
    let bytes = serde_json::to_vec(&v).expect("json");
    assert!(matches!(
        Event::from_wire(&bytes),
        Err(WireError::Version(2))
    ));
    assert!(matches!(
        Event::from_wire(b"not json"),
        Err(WireError::Malformed(_))
    ));
}

/// The published JSON Schema and the Rust types must name the same required fields.
#[test]
fn json_schema_matches_the_types() {
    let schema: Value = serde_json::from_str(JSON_SCHEMA).expect("schema is JSON");
    let wire: Value = serde_json::from_slice(
        &Event::Prediction(parse_prediction(good_prediction(), now()).expect("valid")).to_wire(),
    )
    .expect("json");
    let props = schema["$defs"]["prediction"]["properties"]
        .as_object()
        .expect("properties");
    for key in wire.as_object().expect("object").keys() {
        assert!(props.contains_key(key), "schema lacks field {key}");
    }
    for req in schema["$defs"]["prediction"]["required"]
        .as_array()
        .expect("required")
    {
        let req = req.as_str().expect("string");
        assert!(wire.get(req).is_some(), "wire lacks required field {req}");
    }
    let outcome = Event::Outcome(
        parse_outcome(
            json!({"system_id": "s", "prediction_id": "p", "outcome": 1.0}),
            now(),
        )
        .expect("valid"),
    );
    let wire: Value = serde_json::from_slice(&outcome.to_wire()).expect("json");
    let props = schema["$defs"]["outcome"]["properties"]
        .as_object()
        .expect("properties");
    for key in wire.as_object().expect("object").keys() {
        assert!(props.contains_key(key), "schema lacks outcome field {key}");
    }
}

fn sample_alert() -> Alert {
    Alert {
        alert_id: "s/fnv1a64:00/3/age/ks".into(),
        system_id: "s".into(),
        kind: AlertKind::Drift,
        severity: Severity::Critical,
        signal: "age".into(),
        method: "ks".into(),
        statistic: Some(0.2),
        p_value: None,
        value: 1e-9,
        threshold: 0.01,
        samples: 1000,
        window: WindowInfo {
            index: 3,
            start: None,
            end: None,
            events: 1000,
            outcomes: 2,
            first_event_at: now(),
            last_event_at: now(),
            complete: true,
        },
        reference_version: "fnv1a64:00".into(),
        plan_version: None,
        plan_hash: None,
        summary: "critical drift".into(),
        lifecycle: None,
    }
}

/// Every field an alert puts on the wire is in the published schema, every required one
/// is on the wire, and a payload goes through the wire and back unchanged.
#[test]
fn alert_schema_matches_the_type() {
    let schema: Value = serde_json::from_str(ALERT_JSON_SCHEMA).expect("schema is JSON");
    let alert = sample_alert();
    let wire: Value = serde_json::from_slice(&alert.to_wire()).expect("json");
    let props = schema["properties"].as_object().expect("properties");
    for key in wire.as_object().expect("object").keys() {
        assert!(props.contains_key(key), "schema lacks alert field {key}");
    }
    for req in schema["required"].as_array().expect("required") {
        let req = req.as_str().expect("string");
        assert!(wire.get(req).is_some(), "wire lacks required field {req}");
    }
    let window = schema["properties"]["window"]["properties"]
        .as_object()
        .expect("window properties");
    for key in wire["window"].as_object().expect("window").keys() {
        assert!(window.contains_key(key), "schema lacks window field {key}");
    }
    assert_eq!(Alert::from_wire(&alert.to_wire()).expect("parse"), alert);
    assert!(Alert::from_wire(b"{\"alert_id\":1}").is_err());

    // A notification's lifecycle: every field in the schema, every required one there.
    let mut note = sample_alert();
    note.lifecycle = Some(crate::Lifecycle {
        status: crate::EpisodeStatus::Firing,
        fingerprint: "s/drift/age/ks".into(),
        episode: "s/drift/age/ks@3".into(),
        started_window: 3,
        started_at: now(),
        breaching: 2,
        of: 3,
        clean: 0,
        runbook_url: Some("https://wiki/rb".into()),
        incident_url: Some("https://dw/incidents".into()),
    });
    let wire: Value = serde_json::from_slice(&note.to_wire()).expect("json");
    let lc = &schema["properties"]["lifecycle"];
    for key in wire["lifecycle"].as_object().expect("lifecycle").keys() {
        assert!(
            lc["properties"].get(key).is_some(),
            "schema lacks lifecycle field {key}"
        );
    }
    for req in lc["required"].as_array().expect("required") {
        let req = req.as_str().expect("string");
        assert!(
            wire["lifecycle"].get(req).is_some(),
            "wire lacks lifecycle field {req}"
        );
    }
    assert_eq!(Alert::from_wire(&note.to_wire()).expect("parse"), note);
}

fn control(action: ControlAction, restriction: Option<&str>) -> Control {
    Control {
        v: 1,
        command_id: uuid::Uuid::from_u64_pair(1, 2),
        system_id: "credit-scoring".into(),
        action,
        restriction: restriction.map(str::to_owned),
        reason: "critical drift".into(),
        decided_by: "j.devries".into(),
        incident_id: Some("INC-1".into()),
        model_versions: Vec::new(),
        issued_at: now(),
    }
}

#[test]
fn control_messages_round_trip_and_refuse_what_cannot_be_enforced() {
    let schema: Value = serde_json::from_str(CONTROL_JSON_SCHEMA).expect("schema is JSON");
    let c = control(
        ControlAction::Restrict,
        Some("human review of every decision"),
    );
    let wire: Value = serde_json::from_slice(&c.to_wire()).expect("json");
    let props = schema["properties"].as_object().expect("properties");
    for key in wire.as_object().expect("object").keys() {
        assert!(props.contains_key(key), "schema lacks control field {key}");
    }
    for req in schema["required"].as_array().expect("required") {
        assert!(wire.get(req.as_str().expect("string")).is_some());
    }
    assert_eq!(Control::from_wire(&c.to_wire()).expect("parse"), c);

    let err = |bytes: &[u8]| Control::from_wire(bytes).expect_err("refused").to_string();
    let e = err(&control(ControlAction::Restrict, None).to_wire());
    assert!(e.contains("restriction: required"), "{e}");
    let e = err(&control(ControlAction::Disable, Some("x")).to_wire());
    assert!(e.contains("restriction: only with"), "{e}");
    let mut bad = control(ControlAction::Disable, None);
    bad.system_id = "no spaces".into();
    assert!(err(&bad.to_wire()).contains("system_id"));
    let mut v2 = serde_json::to_value(control(ControlAction::Allow, None)).expect("value");
    v2["v"] = json!(2);
    assert!(err(v2.to_string().as_bytes()).contains("unsupported wire version 2"));
    v2["v"] = json!(1);
    v2["shutdown_everything"] = json!(true);
    assert!(err(v2.to_string().as_bytes()).contains("unknown field"));
}

#[test]
fn feature_values_decode_without_trying_each_variant() {
    let v: std::collections::BTreeMap<String, FeatureValue> = serde_json::from_str(
        r#"{"n": null, "b": true, "i": -3, "u": 18446744073709551615, "f": 0.25, "s": "north"}"#,
    )
    .expect("decodes");
    assert_eq!(v["n"], FeatureValue::Null);
    assert_eq!(v["b"], FeatureValue::Bool(true));
    assert_eq!(v["i"], FeatureValue::Number(-3.0));
    assert_eq!(v["u"], FeatureValue::Number(18446744073709551615.0));
    assert_eq!(v["f"], FeatureValue::Number(0.25));
    assert_eq!(v["s"], FeatureValue::Text("north".into()));
    for bad in [r#"{"x": [1]}"#, r#"{"x": {"a": 1}}"#] {
        let e = serde_json::from_str::<std::collections::BTreeMap<String, FeatureValue>>(bad)
            .expect_err("not a feature value")
            .to_string();
        assert!(
            e.contains("expected a number, a string, a boolean or null"),
            "{e}"
        );
    }
    // The wire form is unchanged.
    assert_eq!(
        serde_json::to_string(&FeatureValue::Text("a".into())).expect("json"),
        "\"a\""
    );
    assert_eq!(
        serde_json::to_string(&FeatureValue::Null).expect("json"),
        "null"
    );
}

/// The one-pass wire decoder gives what serde's tagged enum gives, for every payload:
/// the same event (unsorted and repeated feature names, a relaxed timestamp, fields of
/// the other kind) or the same error.
#[test]
fn wire_decoding_in_one_pass_agrees_with_the_tagged_enum() {
    let id = "\"event_id\":\"6f1c2b1e-8a1d-4c1e-9a55-0c7d6f0a1b2c\"";
    let payloads = [
        format!(
            r#"{{"v":1,"kind":"prediction",{id},"system_id":"s","model_version":"1","prediction_id":"p","timestamp":"2026-11-23T10:00:00.123456789+01:00","features":{{"z":1,"a":"x","m":null,"a":2,"b":true}},"prediction":{{"score":0.5}}}}"#
        ),
        format!(
            r#"{{"kind":"prediction",{id},"system_id":"s","model_version":"1","prediction_id":"p","timestamp":"2026-11-23 10:00:00z","features":{{}},"prediction":{{"label":"y"}},"segment":{{"c":"web"}},"suppressed":["k"],"outcome":{{"label":"ignored"}}}}"#
        ),
        format!(
            r#"{{"kind":"outcome",{id},"system_id":"s","prediction_id":"p","timestamp":"2026-11-23T10:00:00Z","outcome":{{"value":3.5}},"features":{{"ignored":1}}}}"#
        ),
        // Errors: a missing field of the kind, a bad timestamp, a bad kind, not JSON.
        format!(
            r#"{{"kind":"prediction",{id},"system_id":"s","model_version":"1","prediction_id":"p","timestamp":"2026-11-23T10:00:00Z","prediction":{{"score":0.5}}}}"#
        ),
        format!(
            r#"{{"kind":"outcome",{id},"system_id":"s","prediction_id":"p","timestamp":"yesterday","outcome":{{"value":1}}}}"#
        ),
        format!(
            r#"{{"kind":"guess",{id},"system_id":"s","prediction_id":"p","timestamp":"2026-11-23T10:00:00Z"}}"#
        ),
        format!(
            r#"{{"kind":"prediction",{id},"system_id":"s","model_version":"1","prediction_id":"p","timestamp":"2026-11-23T10:00:00Z","features":{{"a":[1]}},"prediction":{{"score":0.5}}}}"#
        ),
        "not json".to_owned(),
    ];
    for p in &payloads {
        let ours = Event::from_wire(p.as_bytes()).map_err(|e| e.to_string());
        let tagged = serde_json::from_slice::<Event>(p.as_bytes())
            .map_err(|e| WireError::from(e).to_string());
        assert_eq!(ours, tagged, "{p}");
    }
    let first = Event::from_wire(payloads[0].as_bytes()).expect("valid");
    let Event::Prediction(first) = first else {
        panic!("a prediction")
    };
    assert_eq!(
        first.features["a"],
        FeatureValue::Number(2.0),
        "the last of a repeated name"
    );
    assert_eq!(
        first.features.keys().collect::<Vec<_>>(),
        ["a", "b", "m", "z"]
    );
}
