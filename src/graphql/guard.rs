//! The schema as HTTP and WebSocket run it: every request is measured by [`super::limits`]
//! before async-graphql parses further, validates or executes it.

use async_graphql::{Data, Executor, Request, Response};
use futures::stream::{self, BoxStream, StreamExt};

use super::{AppSchema, limits};

/// [`AppSchema`] behind the request limits.
#[derive(Clone)]
pub struct GuardedSchema(pub AppSchema);

impl GuardedSchema {
    /// The SDL of the schema behind the guard.
    pub fn sdl(&self) -> String {
        self.0.sdl()
    }
}

impl Executor for GuardedSchema {
    async fn execute(&self, mut request: Request) -> Response {
        match limits::check(&mut request) {
            Ok(()) => self.0.execute(request).await,
            Err(err) => Response::from_errors(vec![err]),
        }
    }

    fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<std::sync::Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        match limits::check(&mut request) {
            Ok(()) => Executor::execute_stream(&self.0, request, session_data),
            Err(err) => stream::once(async move { Response::from_errors(vec![err]) }).boxed(),
        }
    }
}
