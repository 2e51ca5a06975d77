-- The wrapped key whose id is $1 (a uuid), unless its subject is forgotten, and whether a
-- forgetting destroyed a key of that id (migration 0011): one statement, so one snapshot,
-- which shows the key or the record of its destruction, never neither. Neither: the store
-- never had the key. A key row of a forgotten subject (put back by hand) reads as gone,
-- as key_lookup.sql reads it.
SELECT CASE WHEN f.subject IS NULL THEN k.wrapped END AS wrapped,
       (g.key_id IS NOT NULL OR f.subject IS NOT NULL) AS forgotten
FROM (SELECT $1::uuid AS id) wanted
LEFT JOIN {schema}.subject_keys k ON k.key_id = wanted.id
LEFT JOIN {schema}.forgotten_subjects f ON f.subject = k.subject
LEFT JOIN {schema}.forgotten_keys g ON g.key_id = wanted.id
