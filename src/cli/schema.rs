//! `herald schema envelope|campaign|openapi`: prints a contract document
//! (the copies in `schemas/` and `docs/openapi.json` are its output).

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Which {
    Envelope,
    Campaign,
    Openapi,
}

#[derive(clap::Args)]
pub struct Args {
    which: Which,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let doc = match a.which {
        Which::Envelope => crate::schema::envelope(),
        Which::Campaign => crate::schema::campaign(),
        Which::Openapi => crate::schema::openapi(),
    };
    print!("{}", crate::schema::pretty(&doc));
    Ok(())
}
