//! What is generated from the command line's definition, so it cannot
//! drift from `--help`: the shell completion scripts (`lazarus
//! completion`) and the man pages (`lazarus man`).

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use lazarus_cli::Result;

use crate::args::{Cli, Shell};

/// The script is made in memory first: clap_complete panics on a write
/// error (a closed pipe), this says it.
pub(crate) fn completion(shell: Shell) -> Result<()> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "lazarus", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(lazarus_core::Error::io("write the completion script"))?;
    Ok(())
}

/// lazarus.1, and lazarus-COMMAND.1 for every command people use (the
/// hidden internal ones have none).
pub(crate) fn man_pages(dir: &Path) -> Result<()> {
    let io = |what: &Path| lazarus_core::Error::io(format!("write {}", what.display()));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut cli = Cli::command();
    cli.build();
    let mut pages = vec![("lazarus".to_string(), cli.clone())];
    let documented = |s: &&clap::Command| !s.is_hide_set() && s.get_name() != "help";
    for sub in cli.get_subcommands().filter(documented) {
        let name = format!("lazarus-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().display_name(name)));
    }
    for (name, command) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut page)
            .map_err(io(&path))?;
        std::fs::write(&path, page).map_err(io(&path))?;
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::args::Cli;

    #[test]
    fn every_command_people_use_has_a_man_page_and_the_internal_ones_none() {
        let dir = tempfile::tempdir().unwrap();
        man_pages(dir.path()).unwrap();
        let mut pages: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        pages.sort();
        assert_eq!(
            pages,
            [
                "lazarus-checkpoint.1",
                "lazarus-completion.1",
                "lazarus-diff.1",
                "lazarus-inspect.1",
                "lazarus-keygen.1",
                "lazarus-migrate.1",
                "lazarus-restore.1",
                "lazarus-serve.1",
                "lazarus-snapshot.1",
                "lazarus-snapshots.1",
                "lazarus-version.1",
                "lazarus.1",
            ]
        );
        let checkpoint = std::fs::read_to_string(dir.path().join("lazarus-checkpoint.1")).unwrap();
        assert!(checkpoint.contains("lazarus\\-checkpoint"), "{checkpoint}");
        assert!(checkpoint.contains("leave\\-running"), "{checkpoint}");
    }

    #[test]
    fn completion_scripts_know_the_commands_and_their_flags() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "lazarus", &mut script);
            let script = String::from_utf8(script).unwrap();
            for word in [
                "checkpoint",
                "restore",
                "migrate",
                "leave-running",
                "import",
            ] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
    }
}
