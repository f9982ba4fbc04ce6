"""Analysis tools: channel diversity (C3 paper, "Measure Diversity")."""
from .diversity import DiversityRecord, DiversityRecorder, channel_diversity

__all__ = ['channel_diversity', 'DiversityRecord', 'DiversityRecorder']
