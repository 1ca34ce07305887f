"""Teleconsult: telehealth consultations with an audited health record."""
