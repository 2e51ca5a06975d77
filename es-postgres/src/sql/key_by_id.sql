-- The wrapped key whose id is $1 (a uuid), and whether a forgetting destroyed a key of
-- that id (migration 0011): one statement, so one snapshot, which shows the key or the
-- record of its destruction, never neither. Neither: the store never had the key.
SELECT k.wrapped, f.key_id IS NOT NULL AS forgotten
FROM (SELECT $1::uuid AS id) wanted
LEFT JOIN {schema}.subject_keys k ON k.key_id = wanted.id
LEFT JOIN {schema}.forgotten_subjects f ON f.key_id = wanted.id
