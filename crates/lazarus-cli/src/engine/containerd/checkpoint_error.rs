//! A checkpoint's failure as containerd passes the shim's on, said for
//! people: CRIU's lines kept, and the CLI's flag named when CRIU asked for
//! a dump option.

use containerd_client::tonic;

use crate::error::Error;

/// CRIU's advice when a dump needs an option (as it logs it, which is also
/// the CLI's flag) and what the option is for.
const CLI_ADVICE: [(&str, &str); 3] = [
    ("--tcp-established", "it has established TCP connections"),
    (
        "--ext-unix-sk",
        "it is connected to unix sockets outside the container",
    ),
    ("--file-locks", "it holds file locks"),
];

/// A checkpoint's failure as containerd passes the shim's on. CRIU's
/// becomes [`Error::Criu`]: when CRIU asked for a dump option, the first
/// line says so and names the CLI's flag (the shim's own first line tells
/// Docker's users of the annotation instead, and is dropped); CRIU's lines
/// follow.
pub fn checkpoint_error(id: &str, s: tonic::Status) -> Error {
    let message = s.message();
    if !message.contains("CRIU") {
        return Error::containerd(format!("checkpoint {id}"))(s);
    }
    let (first, rest) = message.split_once('\n').unwrap_or((message, ""));
    let needs: Vec<String> = CLI_ADVICE
        .iter()
        .filter(|(flag, _)| message.contains(flag))
        .map(|(flag, why)| format!("{why}: give {flag} to checkpoint them"))
        .collect();
    match needs.is_empty() {
        true => Error::Criu {
            summary: format!("checkpoint {id}: {first}"),
            log: rest.to_string(),
        },
        false => Error::Criu {
            summary: format!("checkpoint of {id} failed: {}", needs.join("; ")),
            log: rest.to_string(),
        },
    }
}
