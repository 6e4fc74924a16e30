//! `cni-bridge` binary: CNI environment + config on stdin in, result or
//! error JSON on stdout out; exit code 1 on error. Logic lives in the library.

use std::io::{Read, Write};

fn main() {
    let vars = std::env::vars().collect();
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let outcome = match read {
        Ok(_) => cni_bridge::plugin::run(&vars, &stdin),
        Err(e) => Err(cni_bridge::plugin::Failure {
            error: cni_bridge::error::CniError::new(
                cni_bridge::error::ErrorCode::IoFailure,
                format!("reading stdin: {e}"),
            ),
            cni_version: "1.1.0".to_string(),
        }),
    };
    let mut out = std::io::stdout().lock();
    let code = match outcome {
        Ok(Some(json)) => {
            let _ = writeln!(out, "{json}");
            0
        }
        Ok(None) => 0,
        Err(failure) => {
            let _ = writeln!(out, "{}", failure.to_json());
            1
        }
    };
    let _ = out.flush();
    std::process::exit(code);
}
