"""Visual search's library side: which image-text model is in use, its vector space, the index stage."""
