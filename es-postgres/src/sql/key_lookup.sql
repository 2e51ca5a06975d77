-- The key of subject $1 and whether the subject is forgotten: always one row, with
-- key_id and wrapped NULL when the subject has no key.
SELECT k.key_id, k.wrapped, f.subject IS NOT NULL AS forgotten
FROM (SELECT $1::text AS subject) s
LEFT JOIN {schema}.subject_keys k ON k.subject = s.subject
LEFT JOIN {schema}.forgotten_subjects f ON f.subject = s.subject
