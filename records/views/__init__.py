"""Staff pages of records: patients, consent documents, the data-protection queue.

Patients' own pages live in frontend (namespace `mine`)."""
