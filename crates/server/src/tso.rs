//! PD's TSO as storage's source of fresh timestamps.

use std::future::Future;
use std::pin::Pin;

use storage::txn::TsSource;
use txn_types::TimeStamp;

pub struct PdTso(pub pd_client::PdClient);

impl TsSource for PdTso {
    fn now(&self) -> Pin<Box<dyn Future<Output = storage::Result<TimeStamp>> + Send + '_>> {
        Box::pin(async move {
            self.0
                .get_tso()
                .await
                .map(TimeStamp::new)
                .map_err(|e| storage::Error::Engine(format!("cannot get a timestamp from PD: {e}")))
        })
    }
}
