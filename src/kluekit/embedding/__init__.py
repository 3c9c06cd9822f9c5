"""Bi-encoder embeddings: train a siamese sentence encoder, embed a corpus once, search it top-k.

- ``encoding``: load a bi-encoder (sentence-transformers dir, or any HF encoder + mean pooling), embed texts;
- ``index``: ``EmbeddingIndex``, exact (matrix product) or approximate (FAISS HNSW) top-k cosine search;
- ``corpus``: read a CSV/TSV/TXT corpus and build (or reuse) an index on disk;
- ``training``: ``kluekit train biencoder`` (CoSENT or cosine loss on STS pairs), its stages run by ``loop``;
- ``nli``: its optional NLI stage (triplets, MultipleNegativesRankingLoss) before the STS pairs;
- ``commands``: the CLI commands ``train biencoder``, ``encode`` and ``search``.
"""
