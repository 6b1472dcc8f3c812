//! `suitcase manifest inspect`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::Value;

/// Arguments of `manifest inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The envelope: a file with raw CBOR or hex text, or `-` for stdin.
    envelope: PathBuf,
    /// Print one JSON object instead of text (for scripts).
    #[arg(long)]
    json: bool,
    /// Leave out the CBOR diagnostic notation.
    #[arg(long)]
    no_diag: bool,
}

pub(crate) fn run(args: &Args) -> Result<ExitCode> {
    let bytes = crate::input::read_binary(&args.envelope)?;
    let mut description = crate::describe::envelope(&bytes);
    if !args.no_diag
        && let Some(obj) = description.as_object_mut()
    {
        obj.insert(
            "diagnostic".into(),
            Value::String(crate::diag::render(&bytes)),
        );
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&description)?);
    } else {
        out!("{}", render(&description));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(d: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "envelope: {} bytes (SUIT_Envelope, CBOR tag 107)",
        d["envelope_bytes"]
    );
    if let Some(e) = d.get("error") {
        let _ = writeln!(
            out,
            "cannot decode the envelope ({}): {}",
            text(&e["reason"]),
            text(&e["detail"])
        );
        return out;
    }
    if let Some(digest) = d.get("manifest_digest") {
        let ok = if d["digest_matches_manifest"] == Value::Bool(true) {
            "matches the manifest"
        } else {
            "DOES NOT MATCH the manifest"
        };
        let _ = writeln!(
            out,
            "manifest digest: {} {} ({ok})",
            text(&digest["algorithm"]),
            text(&digest["hex"])
        );
    }
    let blocks = d["authentication"].as_array().cloned().unwrap_or_default();
    if blocks.is_empty() {
        let _ = writeln!(
            out,
            "authentication: none (unsigned: a device must reject this envelope)"
        );
    } else {
        let _ = writeln!(
            out,
            "authentication: not verified here; run `suitcase manifest check --trust KEY`"
        );
        for (i, b) in blocks.iter().enumerate() {
            for s in b["signers"].as_array().into_iter().flatten() {
                let kid = s["kid"]
                    .as_str()
                    .map(|k| format!(", kid {k}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  block {}: {}, {} ({}){kid}, {}-byte signature",
                    i + 1,
                    text(&b["structure"]),
                    text(&s["algorithm_name"]),
                    s["algorithm"],
                    s["signature_bytes"]
                );
            }
        }
    }
    if let Some(e) = d.get("manifest_error") {
        let _ = writeln!(
            out,
            "manifest: cannot parse ({}): {}",
            text(&e["reason"]),
            text(&e["detail"])
        );
    }
    if let Some(m) = d.get("manifest") {
        let _ = writeln!(
            out,
            "manifest: version 1, sequence number {}",
            m["sequence_number"]
        );
        if let Some(uri) = m["reference_uri"].as_str() {
            let _ = writeln!(out, "reference uri: {uri}");
        }
        let _ = writeln!(out, "components:");
        for (i, c) in m["components"].as_array().into_iter().flatten().enumerate() {
            let _ = writeln!(out, "  {i}: {c}");
        }
        for dep in m["dependencies"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {}: dependency, prefix {}",
                dep["index"], dep["prefix"]
            );
        }
        if !m["manifest_component_id"].is_null() {
            let _ = writeln!(out, "manifest component id: {}", m["manifest_component_id"]);
        }
        for (name, s) in m["sections"].as_object().into_iter().flatten() {
            match s.get("severed") {
                Some(dg) => {
                    let state = match (s["in_envelope"].as_bool(), s["digest_matches"].as_bool()) {
                        (Some(true), Some(true)) => "present in the envelope, digest matches",
                        (Some(true), _) => "present in the envelope, DIGEST DOES NOT MATCH",
                        _ => "not in the envelope",
                    };
                    let _ = writeln!(
                        out,
                        "{name}: severed ({} {}), {state}",
                        text(&dg["algorithm"]),
                        text(&dg["hex"])
                    );
                }
                None => {
                    let _ = writeln!(out, "{name}:");
                }
            }
            render_commands(&mut out, &s["commands"], 1);
        }
        match &m["text"] {
            Value::Array(entries) => {
                let _ = writeln!(out, "text:");
                for e in entries {
                    let comp = e
                        .get("component")
                        .map(|c| format!("{c} "))
                        .unwrap_or_default();
                    let first_line = text(&e["text"]).lines().next().unwrap_or("").to_owned();
                    let _ = writeln!(
                        out,
                        "  [{}] {comp}{}: {first_line}",
                        text(&e["language"]),
                        text(&e["field"])
                    );
                }
            }
            Value::Object(o) => {
                let _ = writeln!(
                    out,
                    "text: severed ({}), not in the envelope",
                    text(&o["severed"]["hex"])
                );
            }
            _ => {}
        }
    }
    for p in d["integrated_payloads"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "integrated payload {}: {} bytes, sha-256 {}",
            p["key"],
            p["bytes"],
            text(&p["sha256"])
        );
    }
    if let Some(diag) = d["diagnostic"].as_str() {
        let _ = writeln!(out, "diagnostic notation:");
        for line in diag.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

fn render_commands(out: &mut String, cmds: &Value, depth: usize) {
    let pad = "  ".repeat(depth);
    for c in cmds.as_array().into_iter().flatten() {
        let name = text(&c["command"]);
        let mut line = format!("{pad}@{} {name}", c["offset"]);
        if let Some(kind) = c["kind"].as_str() {
            let _ = write!(line, " ({kind}, report policy {})", c["reporting_policy"]);
        }
        if let Some(i) = c.get("index") {
            let _ = write!(line, " {i}");
        }
        if let Some(p) = c.get("parameters").and_then(Value::as_object) {
            let parts: Vec<String> = p.iter().map(|(k, v)| format!("{k}={}", short(v))).collect();
            let _ = write!(line, " {}", parts.join(", "));
        }
        if let Some(a) = c.get("argument") {
            let _ = write!(line, " {a}");
        }
        let _ = writeln!(out, "{line}");
        if let Some(branches) = c["branches"].as_array() {
            for (i, b) in branches.iter().enumerate() {
                let _ = writeln!(out, "{pad}  branch {}:", i + 1);
                render_commands(out, b, depth + 2);
            }
            if c["allow_all_fail"] == Value::Bool(true) {
                let _ = writeln!(out, "{pad}  branch nil: succeed anyway");
            }
        }
        if let Some(seq) = c.get("sequence") {
            render_commands(out, seq, depth + 1);
        }
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("algorithm") && o.contains_key("hex") => {
            format!("{}:{}", text(&o["algorithm"]), text(&o["hex"]))
        }
        other => other.to_string(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}
