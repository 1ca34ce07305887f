"""Staff pages of scheduling: calendars, booking, appointment actions, availability and visit types.

Patients' own scheduling pages live in frontend. Views are thin: parse → gate (scheduling.access) → service →
render. URLs carry ids, dates and appointments' public ids only, never personal data.
"""
