//! The end of a recording as something to wait for: blocking ([`FinishHandle::wait`]) from a
//! plain thread, or as a `Future` from async code without blocking its executor.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::error::RecorderError;
use crate::writer::WriterStats;

/// What a finished recording left on disk.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Every file of the recording (absolute paths), in the order they opened.
    pub files: Vec<PathBuf>,
    /// The manifest (absolute path).
    pub manifest: PathBuf,
    /// Why the recording stopped early, if it did (the files are still finished and listed).
    pub failure: Option<RecorderError>,
    /// The recording's final counters.
    pub stats: WriterStats,
}

/// The writer thread's outcome, once it has one, and who waits for it.
#[derive(Default)]
pub(crate) struct Completion {
    state: Mutex<CompletionState>,
    done: Condvar,
}

#[derive(Default)]
struct CompletionState {
    result: Option<Result<Finished, RecorderError>>,
    /// Set once the result is stored (it may have been taken since).
    completed: bool,
    waker: Option<Waker>,
}

impl Completion {
    /// Stores the outcome (the first one only) and wakes whoever waits.
    pub(crate) fn complete(&self, result: Result<Finished, RecorderError>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.completed {
            return;
        }
        state.result = Some(result);
        state.completed = true;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        self.done.notify_all();
    }
}

/// Completes with [`RecorderError::WriterGone`] if the writer thread ends without completing
/// (it panicked), so that waiters never hang.
pub(crate) struct CompleteOnDrop(pub(crate) Arc<Completion>);

impl Drop for CompleteOnDrop {
    fn drop(&mut self) {
        self.0.complete(Err(RecorderError::WriterGone(
            "the writer thread panicked".into(),
        )));
    }
}

/// The end of a recording: [`FinishHandle::wait`] blocks until every file is finished and
/// the manifest written; `.await` does the same without blocking an async executor.
pub struct FinishHandle {
    pub(crate) completion: Arc<Completion>,
}

impl FinishHandle {
    /// Blocks the calling thread until the recording is finished.
    pub fn wait(self) -> Result<Finished, RecorderError> {
        let mut state = self
            .completion
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(result) = state.result.take() {
                return result;
            }
            if state.completed {
                return Err(RecorderError::WriterGone("result already taken".into()));
            }
            state = self
                .completion
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Future for FinishHandle {
    type Output = Result<Finished, RecorderError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self
            .completion
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(result) = state.result.take() {
            return Poll::Ready(result);
        }
        if state.completed {
            return Poll::Ready(Err(RecorderError::WriterGone(
                "result already taken".into(),
            )));
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
