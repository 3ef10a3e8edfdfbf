//! The service boundary's last line of defence: a panic while handling a gRPC request (a bug;
//! none is known) is caught, logged with the method, counted in
//! `atoll_grpc_panics_total{method}`, and answered as gRPC `Internal`; the node keeps serving.

use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::FutureExt;
use tonic::codegen::http;

use crate::metrics::GRPC_PANICS;

/// Wraps every gRPC service of the node (see [`CatchPanic`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchPanicLayer;

impl<S> tower::Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;
    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for CatchPanic<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let method = req.uri().path().to_owned();
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req)));
        Box::pin(async move {
            let outcome = match called {
                Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
                Err(payload) => Err(payload),
            };
            outcome.unwrap_or_else(|payload| {
                let message = panic_message(payload.as_ref());
                tracing::error!(%method, panic = %message, "a request handler panicked; answered Internal");
                GRPC_PANICS.with_label_values(&[method.as_str()]).inc();
                Ok(
                    tonic::Status::internal(format!("the server failed handling {method}: {message}"))
                        .into_http(),
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{Layer, Service, ServiceExt};

    #[tokio::test]
    async fn a_panicking_handler_is_answered_internal_and_counted() {
        let handler = tower::service_fn(|req: http::Request<()>| async move {
            if req.uri().path() == "/tikvpb.Tikv/Boom" {
                panic!("boom");
            }
            Ok::<_, Infallible>(http::Response::new(String::from("fine")))
        });
        let mut svc = CatchPanicLayer.layer(handler);
        let before = GRPC_PANICS.with_label_values(&["/tikvpb.Tikv/Boom"]).get();
        let boom = http::Request::builder()
            .uri("/tikvpb.Tikv/Boom")
            .body(())
            .unwrap();
        let resp = svc.ready().await.unwrap().call(boom).await.unwrap();
        let status = tonic::Status::from_header_map(resp.headers()).expect("a grpc status");
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().contains("boom"), "{}", status.message());
        assert_eq!(
            GRPC_PANICS.with_label_values(&["/tikvpb.Tikv/Boom"]).get(),
            before + 1
        );
        let ok = http::Request::builder()
            .uri("/tikvpb.Tikv/RawGet")
            .body(())
            .unwrap();
        let resp = svc.ready().await.unwrap().call(ok).await.unwrap();
        assert_eq!(resp.into_body(), "fine");
    }
}
