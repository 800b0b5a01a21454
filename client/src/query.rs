//! Typed queries over a [`Connection`]: list, values, get, changes, jobs.

use std::path::Path;
use std::time::Duration;

use protocol::{DescInfo, JobInfo, Reply, Request, Role, ValueInfo};

use crate::conn::{Connection, Error};

/// A query session with the daemon.
#[derive(Debug)]
pub struct QueryClient {
    conn: Connection,
}

/// Answer to [`QueryClient::get`].
#[derive(Debug, Clone, PartialEq)]
pub enum GetResult {
    Found(Vec<ValueInfo>),
    /// These names are not in the proxy.
    Unknown(Vec<String>),
}

impl QueryClient {
    pub fn connect(path: &Path, timeout: Duration) -> Result<QueryClient, Error> {
        Ok(QueryClient { conn: Connection::connect(path, Role::Query, timeout)? })
    }

    /// Every series description, ordered by name.
    pub fn list(&mut self) -> Result<Vec<DescInfo>, Error> {
        self.conn.queue(&Request::List)?;
        self.conn.flush()?;
        let mut out = Vec::new();
        loop {
            match self.conn.recv()? {
                Reply::Descs { descs, last } => {
                    out.extend(descs);
                    if last {
                        return Ok(out);
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Every series value, ordered by name, with the store generation.
    pub fn values(&mut self) -> Result<(u64, Vec<ValueInfo>), Error> {
        self.values_of(&Request::Values)
    }

    /// The series that changed after `since` (0: every series that ever
    /// changed), with the generation to pass next time.
    pub fn changes(&mut self, since: u64) -> Result<(u64, Vec<ValueInfo>), Error> {
        self.values_of(&Request::Changes { since })
    }

    /// The named series (`family{labels}` as listed), in the order given.
    pub fn get(&mut self, names: &[String]) -> Result<GetResult, Error> {
        self.conn.queue(&Request::Get { names: names.to_vec() })?;
        self.conn.flush()?;
        match self.conn.recv()? {
            Reply::Unknown { names } => Ok(GetResult::Unknown(names)),
            Reply::Values { values, last, .. } => Ok(GetResult::Found(self.rest_of_values(values, last)?)),
            other => Err(unexpected(other)),
        }
    }

    /// The node's jobs, running and finished within their retention, by
    /// start.
    pub fn jobs(&mut self) -> Result<Vec<JobInfo>, Error> {
        self.conn.queue(&Request::Jobs)?;
        self.conn.flush()?;
        let mut out = Vec::new();
        loop {
            match self.conn.recv()? {
                Reply::Jobs { jobs, last } => {
                    out.extend(jobs);
                    if last {
                        return Ok(out);
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    fn values_of(&mut self, req: &Request) -> Result<(u64, Vec<ValueInfo>), Error> {
        self.conn.queue(req)?;
        self.conn.flush()?;
        match self.conn.recv()? {
            Reply::Values { generation, values, last } => Ok((generation, self.rest_of_values(values, last)?)),
            other => Err(unexpected(other)),
        }
    }

    fn rest_of_values(&mut self, mut out: Vec<ValueInfo>, mut last: bool) -> Result<Vec<ValueInfo>, Error> {
        while !last {
            match self.conn.recv()? {
                Reply::Values { values, last: l, .. } => {
                    out.extend(values);
                    last = l;
                }
                other => return Err(unexpected(other)),
            }
        }
        Ok(out)
    }
}

fn unexpected(r: Reply) -> Error {
    match r {
        Reply::Error { message, .. } => Error::Refused(message),
        other => Error::Unexpected(format!("{other:?}")),
    }
}
