DROP TABLE mahavishnu.vector_indexes;
