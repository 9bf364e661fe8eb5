//! Paging through a listing from the command line: `--page-size` for one page, or every
//! page by default.

use anyhow::Result;
use clap::Args;
use lockbox_client::proto::common::Page;

/// The paging flags of a `list` command.
#[derive(Args)]
pub(crate) struct PageArgs {
    /// Return one page of this size (default: every page).
    #[arg(long)]
    pub(crate) page_size: Option<u32>,
    /// Continue from this token.
    #[arg(long, default_value = "")]
    pub(crate) page_token: String,
}

/// Fetches one page when a size is given, else every page.
pub(crate) async fn collect_pages<T, F, Fut>(page: PageArgs, mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(Page) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), lockbox_client::CallError>>,
{
    let mut token = page.page_token;
    let mut all = Vec::new();
    loop {
        let (items, next) = fetch(Page {
            page_size: page.page_size.unwrap_or(0),
            page_token: token,
        })
        .await?;
        all.extend(items);
        if next.is_empty() || page.page_size.is_some() {
            return Ok(all);
        }
        token = next;
    }
}
