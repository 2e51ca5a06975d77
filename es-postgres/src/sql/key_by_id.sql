-- The wrapped key whose id is $1 (a uuid); no row once its subject is forgotten.
SELECT wrapped FROM {schema}.subject_keys WHERE key_id = $1
