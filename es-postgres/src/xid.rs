//! PostgreSQL's `xid8`, the 64-bit transaction id, which sqlx has no type for.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueFormat, PgValueRef, Postgres};
use sqlx::{Decode, Encode, Type};

/// A transaction id as `xid8` carries it: in binary, a big-endian 64-bit integer. Reading it
/// directly spares the server a text conversion per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Xid8(pub(crate) u64);

/// `xid8` is a built-in type, so its OID is fixed.
const XID8_OID: u32 = 5069;

impl Type<Postgres> for Xid8 {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(XID8_OID))
    }
}

impl Decode<'_, Postgres> for Xid8 {
    fn decode(value: PgValueRef<'_>) -> Result<Self, BoxDynError> {
        match value.format() {
            PgValueFormat::Binary => {
                let bytes: [u8; 8] = value
                    .as_bytes()?
                    .try_into()
                    .map_err(|_| "an xid8 is 8 bytes")?;
                Ok(Self(u64::from_be_bytes(bytes)))
            }
            PgValueFormat::Text => Ok(Self(value.as_str()?.parse()?)),
        }
    }
}

impl Encode<'_, Postgres> for Xid8 {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.extend_from_slice(&self.0.to_be_bytes());
        Ok(IsNull::No)
    }
}
