//! Entry point: parse the command line, set up logging, run, map errors to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let (cli, matches) = cxr8::cli::parse();
    cxr8::cli::init_tracing(cli.verbose);
    match cxr8::cli::run(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Print the whole cause chain: the outer context says what we were doing, the
            // inner causes say what went wrong (file, line, column).
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
