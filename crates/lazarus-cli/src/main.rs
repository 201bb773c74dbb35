//! `lazarus`: the command line over Lazarus's core.
//!
//! Only the front door: the arguments (clap, defined in `args`), the call
//! into the library (`lazarus_cli`, whose flows do the work and return
//! typed reports), and the printing of those reports, as text or with
//! `--json` as JSON. `generated` makes the completion scripts and man pages
//! from the same definition.

mod args;
mod generated;

use std::process::ExitCode;

use clap::Parser;
use lazarus_core::config::Config;
use serde::Serialize;

use lazarus_cli::engine::endpoints::Endpoints;
use lazarus_cli::flows::keys::{self, KeyKind};
use lazarus_cli::flows::migration::{filter, send, serve};
use lazarus_cli::flows::snapshot::{self, manage, revert, take, SnapshotAction, SnapshotsAction};
use lazarus_cli::flows::{
    self, all, export, group_guard, image, import, inspect, restore_guard, version,
};
use lazarus_cli::report::{self, Exported, Imported, Summary};
use lazarus_cli::{block_on, Result};

use args::{CheckpointArgs, Cli, Command, RestoreArgs, TopEngineArgs};
use generated::{completion, man_pages};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command, &cli.engines) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lazarus: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// One arm per command and form, each a few lines that call the library
/// and print its report: long as a whole (over 80 lines), kept whole so
/// that the whole dispatch reads in one place.
fn run(command: Command, top: &TopEngineArgs) -> Result<()> {
    match command {
        Command::Version { json } => {
            let (report, criu_error) = version::version()?;
            print(&report, json);
            criu_error.map_or(Ok(()), |e| Err(e.into()))
        }
        Command::Inspect {
            path,
            json,
            identity,
        } => {
            print(&inspect::run(&path, json, identity.as_deref())?, json);
            Ok(())
        }
        Command::Checkpoint { args, engine } if args.image_dest().is_some() => {
            let dest = args.image_dest().expect("checked");
            let source = match (&args.snapshot, &args.from_archive) {
                (Some(key), _) => image::ImageSource::Snapshot(key),
                (_, Some(file)) => image::ImageSource::Archive(file),
                _ => image::ImageSource::Container(&args.one),
            };
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            let report = block_on(image::run(source, &dest, endpoints, &config))?;
            print(&report, args.one.json);
            Ok(())
        }
        Command::Checkpoint {
            args:
                CheckpointArgs {
                    from_archive: Some(_),
                    ..
                },
            ..
        } => Err(lazarus_cli::Error::Refused(
            "--from-archive makes a checkpoint image: give --export oci-archive:FILE, \
             --export oci:DIR or --push REFERENCE"
                .into(),
        )),
        Command::Checkpoint {
            args:
                CheckpointArgs {
                    one,
                    snapshot: Some(key),
                    ..
                },
            ..
        } => {
            let config = Config::load()?;
            let report = manage::export(
                &config,
                &key,
                &one.export,
                one.compress,
                one.sign.as_deref(),
                one.encrypt.as_deref(),
            )?;
            print(&report, one.json);
            Ok(())
        }
        Command::Checkpoint {
            args: CheckpointArgs { one, all, .. },
            engine,
        } if all.all => {
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            let report = all::checkpoint::run(&all, &one, endpoints, &config)?;
            print(&report, one.json);
            all_failed(report.failed, report.containers.len())
        }
        Command::Checkpoint {
            args: CheckpointArgs { one: args, .. },
            engine,
        } => {
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            let report = block_on(flows::checkpoint(&args, endpoints, &config))?;
            let mut text = match args.json {
                true => report::json(&report),
                false => report.summary(),
            };
            if let (Exported::One(r), true, false) = (&report, args.print_stats, args.json) {
                text = format!("{text}\n{}", report::export_text(r).trim_end());
            }
            // `--export -`: standard output is the archive's.
            match export::is_stdout(&args.export) {
                true => eprintln!("{text}"),
                false => println!("{text}"),
            }
            if let (false, Some(said)) = (args.json, report.said()) {
                eprintln!("{said}");
            }
            Ok(())
        }
        Command::Restore {
            args: RestoreArgs { one, snapshot, .. },
            engine,
        } if snapshot.snapshot.is_some() => {
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            let report = Imported::One(block_on(revert::run(&snapshot, &one, endpoints, &config))?);
            print(&report, one.json);
            if let (false, Some(said)) = (one.json, report.said()) {
                eprintln!("{said}");
            }
            Ok(())
        }
        Command::Restore {
            args: RestoreArgs { one, all, .. },
            engine,
        } if all.all => {
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            let report = all::restore::run(&all, &one, endpoints, &config)?;
            print(&report, one.json);
            all_failed(report.failed, report.containers.len())
        }
        Command::Restore {
            args: RestoreArgs { one: args, .. },
            engine,
        } => {
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            let imported = block_on(import::run(&args, endpoints, &config))?;
            print(&imported, args.json);
            if let (false, Some(said)) = (args.json, imported.said()) {
                eprintln!("{said}");
            }
            Ok(())
        }
        Command::Snapshot {
            action: Some(SnapshotAction::Import(args)),
            ..
        } => {
            let report = manage::import(&Config::load()?, &args)?;
            print(&report, args.json);
            Ok(())
        }
        Command::Snapshot {
            action: Some(SnapshotAction::Rm { ids, json }),
            ..
        } => {
            let store = snapshot::store(&Config::load()?)?;
            print(&manage::remove(&store, &ids)?, json);
            Ok(())
        }
        Command::Snapshot { take, engine, .. } => {
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            let json = take.json;
            let mut said = |r: &snapshot::report::SnapshotReport| {
                print(r, json);
                if let (false, Some(said)) = (json, r.said()) {
                    eprintln!("{said}");
                }
            };
            match take.every {
                Some(period) => block_on(take::every(&take, period, endpoints, &config, &mut said)),
                None => {
                    said(&block_on(take::take(&take, endpoints, &config))?);
                    Ok(())
                }
            }
        }
        Command::Snapshots {
            action: Some(SnapshotsAction::Prune(args)),
            ..
        } => {
            let store = snapshot::store(&Config::load()?)?;
            print(&manage::prune(&store, &args)?, args.json);
            Ok(())
        }
        Command::Snapshots {
            container, json, ..
        } => {
            let store = snapshot::store(&Config::load()?)?;
            print(&manage::list(&store, container.as_deref())?, json);
            Ok(())
        }
        Command::Diff { a, b, json } => {
            let store = snapshot::store(&Config::load()?)?;
            print(&snapshot::diff::run(&store, &a, &b)?, json);
            Ok(())
        }
        Command::Migrate { args, engine } => {
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            print(&block_on(send::run(&args, endpoints, &config))?, args.json);
            Ok(())
        }
        Command::Serve { args, engine } => {
            let endpoints = &engine.endpoints(top)?;
            block_on(serve::run(&args, endpoints, &Config::load()?))
        }
        // The guards are given both sockets: nothing is discovered.
        Command::GroupGuard { args, engine } => {
            let address = engine.address.or_else(|| top.address.clone());
            let endpoints = Endpoints::resolve(None, address);
            block_on(group_guard::run(&args, &endpoints.containerd))
        }
        Command::RestoreGuard { args, engine } => {
            let host = engine.host.or_else(|| top.host.clone());
            let address = engine.address.or_else(|| top.address.clone());
            block_on(restore_guard::run(
                &args,
                &Endpoints::resolve(host, address),
            ))
        }
        Command::FilterGuard(args) => filter::run_guard(&args),
        Command::Keygen { file, sign, age } => {
            let kind = match (sign, age) {
                (true, _) => KeyKind::Signing,
                (_, true) => KeyKind::Age,
                _ => KeyKind::Migration,
            };
            println!("{}", keys::keygen(file, kind)?.summary());
            Ok(())
        }
        Command::Completion { shell } => completion(shell),
        Command::Man { dir } => man_pages(&dir),
    }
}

/// `--all`: the report is printed; the command fails if any container did.
fn all_failed(failed: usize, of: usize) -> Result<()> {
    match failed {
        0 => Ok(()),
        n => Err(lazarus_cli::Error::Refused(format!(
            "{n} of {of} containers failed (named above)"
        ))),
    }
}

/// A report as JSON (`--json`), else its line for people.
fn print<R: Serialize + Summary>(report: &R, json: bool) {
    match json {
        true => println!("{}", report::json(report)),
        false => println!("{}", report.summary()),
    }
}
