"""tweetwatch training: data readers, gensim embeddings, torch model, evaluation, ONNX export."""
