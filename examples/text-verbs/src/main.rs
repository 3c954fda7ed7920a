//! `sft-text-server`: `sft-server` with the `WC`, `HEAD` and `TOUCH` verbs; the same flags.

fn main() {
    let me = sft_server::Binary::new("sft-text-server", env!("CARGO_PKG_VERSION"))
        .about("Serves a folder over the sft protocol, with the WC and HEAD text verbs too.");
    sft_server::run_main(me, sft_text_verbs::registry());
}
