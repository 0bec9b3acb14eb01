//! Command lines where algorithm parameters (`--topk 3`, flags derived from the configuration's
//! fields, so unknown to clap) and ordinary options (`--name`, `--steps`, `--set`) mix in any
//! order. The parameters are moved behind the options, using clap's own list of each
//! subcommand's options, so that clap parses every option exactly once and the parameters arrive
//! whole in the subcommand's trailing `PARAMS` list.

use clap::CommandFactory;
use std::ffi::OsString;

/// `args` (program name first) with every algorithm parameter of a subcommand that takes them
/// moved to the end, in order; everything else stays where it was.
pub fn params_last<C: CommandFactory>(args: Vec<OsString>) -> Vec<OsString> {
    let mut cli = C::command();
    cli.build();
    let Some(at) = args
        .iter()
        .skip(1)
        .position(|a| cli.find_subcommand(a).is_some())
        .map(|i| i + 1)
    else {
        return args;
    };
    let Some(sub) = args[at].to_str().and_then(|name| cli.find_subcommand(name)) else {
        return args;
    };
    let takes_params = sub
        .get_arguments()
        .any(|a| a.get_id() == "params" && a.is_trailing_var_arg_set());
    if !takes_params {
        return args;
    }
    // Long option name → whether it takes a value (globals such as -v included).
    let known: Vec<(String, bool)> = sub
        .get_arguments()
        .chain(cli.get_arguments().filter(|a| a.is_global_set()))
        .flat_map(|a| {
            let takes = a.get_action().takes_values();
            a.get_long_and_visible_aliases()
                .unwrap_or_default()
                .into_iter()
                .map(move |l| (l.to_string(), takes))
        })
        .chain([("help".to_string(), false)])
        .collect();
    let (mut kept, mut params) = (args[..=at].to_vec(), Vec::new());
    let mut rest = args[at + 1..].iter().cloned();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            kept.push(arg);
            kept.extend(rest.by_ref());
            break;
        }
        let Some(flag) = arg.to_str().and_then(|a| a.strip_prefix("--")) else {
            kept.push(arg);
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, _)) => (n, true),
            None => (flag, false),
        };
        match known.iter().find(|(l, _)| l == name) {
            Some((_, takes)) => {
                let value = (*takes && !inline).then(|| rest.next()).flatten();
                kept.push(arg);
                kept.extend(value);
            }
            // An algorithm parameter always takes a value (which may start with `-`).
            None => {
                let value = (!inline).then(|| rest.next()).flatten();
                params.push(arg);
                params.extend(value);
            }
        }
    }
    kept.extend(params);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{Cli, Command};
    use clap::Parser;

    fn parse(line: &str) -> Cli {
        let args: Vec<OsString> = std::iter::once("rlvr")
            .chain(line.split_whitespace())
            .map(OsString::from)
            .collect();
        Cli::try_parse_from(params_last::<Cli>(args)).unwrap()
    }

    #[test]
    fn options_after_parameters_are_parsed_by_clap_and_parameters_stay_whole() {
        let cli = parse(
            "-v train --topk 3 --name run1 --tau=0.1 --clip-low -0.2 --set train.lr=1e-4 \
             --steps 7 --runs-dir r --set a=b --nproc 2 --config c.toml --device cpu --seed 4",
        );
        let Command::Train(t) = cli.command else {
            panic!("train")
        };
        assert_eq!(cli.verbose, 1);
        assert_eq!(t.name.as_deref(), Some("run1"));
        assert_eq!(t.steps, Some(7));
        assert_eq!(t.seed, Some(4));
        assert_eq!(t.nproc, Some(2));
        assert_eq!(t.runs_dir, std::path::PathBuf::from("r"));
        assert_eq!(t.algo.sets, ["train.lr=1e-4", "a=b"]);
        assert_eq!(
            t.algo.config.as_deref(),
            Some(std::path::Path::new("c.toml"))
        );
        assert_eq!(t.target.device.device.as_deref(), Some("cpu"));
        assert_eq!(
            t.algo.params,
            ["--topk", "3", "--tau=0.1", "--clip-low", "-0.2"]
        );
    }

    #[test]
    fn commands_without_parameters_are_left_to_clap() {
        let args: Vec<OsString> = ["rlvr", "eval", "--bogus", "1"]
            .into_iter()
            .map(OsString::from)
            .collect();
        assert_eq!(params_last::<Cli>(args.clone()), args);
        assert!(
            Cli::try_parse_from(args).is_err(),
            "clap refuses unknown options"
        );
        let cli = parse("config --tau 0.5 --algo simko --task countdown");
        let Command::Config(c) = cli.command else {
            panic!("config")
        };
        assert_eq!(c.algo.algo.as_deref(), Some("simko"));
        assert_eq!(c.target.data.task.as_deref(), Some("countdown"));
        assert_eq!(c.algo.params, ["--tau", "0.5"]);
    }
}
