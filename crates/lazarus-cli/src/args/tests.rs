//! The command line's definition checked: clap's own consistency checks,
//! and which commands take the engines' sockets, before or after the
//! command.

use clap::{CommandFactory, Parser};

use super::*;

#[test]
fn the_command_line_is_well_formed() {
    Cli::command().debug_assert();
}

#[test]
fn only_the_commands_that_talk_to_an_engine_take_its_sockets() {
    let engines = [
        "checkpoint",
        "restore",
        "migrate",
        "serve",
        "group-guard",
        "restore-guard",
        "snapshot",
    ];
    for sub in Cli::command().get_subcommands() {
        for (long, short) in [("host", 'H'), ("address", 'a')] {
            let arg = sub.get_arguments().find(|a| a.get_long() == Some(long));
            assert_eq!(
                arg.is_some(),
                engines.contains(&sub.get_name()),
                "{} --{long}",
                sub.get_name()
            );
            if let Some(arg) = arg {
                assert_eq!(arg.get_short(), Some(short));
            }
        }
    }
    let keygen = Cli::command()
        .find_subcommand_mut("keygen")
        .unwrap()
        .render_long_help()
        .to_string();
    assert!(
        !keygen.contains("--host") && !keygen.contains("--address"),
        "{keygen}"
    );
    // Given after the command, or before it (as the guards are
    // started): the command's own wins.
    let cli = Cli::try_parse_from([
        "lazarus",
        "-a",
        "/top",
        "checkpoint",
        "-a",
        "/own",
        "web",
        "--export",
        "f",
    ])
    .unwrap();
    let Command::Checkpoint { engine, .. } = cli.command else {
        panic!("not checkpoint")
    };
    assert_eq!(engine.address.as_deref(), Some("/own"));
    let cli = Cli::try_parse_from([
        "lazarus",
        "--address",
        "/c",
        "group-guard",
        "--member",
        "n/i",
    ])
    .unwrap();
    assert_eq!(cli.engines.address.as_deref(), Some("/c"));
    assert!(Cli::try_parse_from(["lazarus", "keygen", "-H", "unix:///d"]).is_err());
}
