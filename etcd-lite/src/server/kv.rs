//! The KV service: Range, Put, DeleteRange, Txn, Compact (and RangeStream).
//!
//! Writes travel through Raft as a [`Command::Txn`] (a Put is a one-op txn);
//! ranges are read locally after the read barrier (linearizable unless the
//! request is `serializable`).

use std::pin::Pin;
use std::sync::Arc;

use etcd_client::proto::{
    PbCompactionRequest, PbCompactionResponse, PbDeleteRequest, PbDeleteResponse, PbKvService,
    PbPutRequest, PbPutResponse, PbRangeRequest, PbRangeResponse, PbRangeStreamResponse,
    PbTxnOpRequest, PbTxnOpResponse, PbTxnRequest, PbTxnRequestOp, PbTxnResponse,
};
use futures::Stream;
use tonic::{Request, Response, Status};

use super::errors::ApiError;
use super::{with_store, EtcdServer};
use crate::mvcc::{validate_txn, AppliedBody, Command, MvccError};

pub struct KvService {
    server: Arc<EtcdServer>,
}

impl KvService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        KvService { server }
    }

    async fn do_range(&self, req: PbRangeRequest) -> Result<PbRangeResponse, ApiError> {
        if req.key.is_empty() {
            return Err(MvccError::EmptyKey.into());
        }
        self.server.check_size(&req)?;
        self.server.read_barrier(req.serializable).await?;
        let (mut resp, revision) = with_store(&self.server, |store| {
            store.range(&req).map(|resp| (resp, store.revision()))
        })?;
        resp.header = Some(self.server.header(revision));
        Ok(resp)
    }

    /// Proposes a single-op txn and returns that op's response.
    async fn single_op(&self, op: PbTxnOpRequest) -> Result<(PbTxnOpResponse, i64), ApiError> {
        let txn = PbTxnRequest {
            compare: vec![],
            success: vec![PbTxnRequestOp { request: Some(op) }],
            failure: vec![],
        };
        let (resp, revision) = self.propose_txn(txn).await?;
        let op = resp
            .responses
            .into_iter()
            .next()
            .and_then(|r| r.response)
            .ok_or_else(|| ApiError::InvalidArgument("empty transaction response".into()))?;
        Ok((op, revision))
    }

    async fn propose_txn(&self, txn: PbTxnRequest) -> Result<(PbTxnResponse, i64), ApiError> {
        let applied = self.server.propose(Command::Txn(txn)).await?;
        match applied.body {
            AppliedBody::Txn(resp) => Ok((resp, applied.revision)),
            other => Err(ApiError::InvalidArgument(format!(
                "unexpected txn result {other:?}"
            ))),
        }
    }
}

type RangeStream = Pin<Box<dyn Stream<Item = Result<PbRangeStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PbKvService for KvService {
    async fn range(
        &self,
        req: Request<PbRangeRequest>,
    ) -> Result<Response<PbRangeResponse>, Status> {
        Ok(Response::new(self.do_range(req.into_inner()).await?))
    }

    type RangeStreamStream = RangeStream;

    async fn range_stream(
        &self,
        req: Request<PbRangeRequest>,
    ) -> Result<Response<RangeStream>, Status> {
        let resp = self.do_range(req.into_inner()).await?;
        let item = PbRangeStreamResponse {
            range_response: Some(resp),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(item)]))))
    }

    async fn put(&self, req: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        let req = req.into_inner();
        if req.key.is_empty() {
            return Err(ApiError::from(MvccError::EmptyKey).into());
        }
        self.server.check_size(&req)?;
        match self.single_op(PbTxnOpRequest::RequestPut(req)).await? {
            (PbTxnOpResponse::ResponsePut(mut resp), revision) => {
                resp.header = Some(self.server.header(revision));
                Ok(Response::new(resp))
            }
            (other, _) => {
                Err(ApiError::InvalidArgument(format!("unexpected put result {other:?}")).into())
            }
        }
    }

    async fn delete_range(
        &self,
        req: Request<PbDeleteRequest>,
    ) -> Result<Response<PbDeleteResponse>, Status> {
        let req = req.into_inner();
        if req.key.is_empty() {
            return Err(ApiError::from(MvccError::EmptyKey).into());
        }
        self.server.check_size(&req)?;
        match self
            .single_op(PbTxnOpRequest::RequestDeleteRange(req))
            .await?
        {
            (PbTxnOpResponse::ResponseDeleteRange(mut resp), revision) => {
                resp.header = Some(self.server.header(revision));
                Ok(Response::new(resp))
            }
            (other, _) => {
                Err(ApiError::InvalidArgument(format!("unexpected delete result {other:?}")).into())
            }
        }
    }

    async fn txn(&self, req: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        let req = req.into_inner();
        self.server.check_size(&req)?;
        validate_txn(&req, self.server.max_txn_ops).map_err(ApiError::from)?;
        let (mut resp, revision) = self.propose_txn(req).await?;
        resp.header = Some(self.server.header(revision));
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        req: Request<PbCompactionRequest>,
    ) -> Result<Response<PbCompactionResponse>, Status> {
        let req = req.into_inner();
        let applied = self
            .server
            .propose(Command::Compact {
                revision: req.revision,
            })
            .await?;
        Ok(Response::new(PbCompactionResponse {
            header: Some(self.server.header(applied.revision)),
        }))
    }
}
