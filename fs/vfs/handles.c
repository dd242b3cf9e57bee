/*
 * handles: a chained hash table from key to object; see handles.h.
 * Key = generation << 40 | a counter, so keys never repeat across daemons.
 */
#include "handles.h"

#include <pthread.h>
#include <stdlib.h>

#define NBUCKETS 1024u

struct entry {
	uint64_t key;
	void *p;
	struct entry *next;
};

struct handles {
	pthread_mutex_t lock;
	uint64_t generation;
	uint64_t counter;
	struct entry *b[NBUCKETS];
};

static struct entry **slot(struct handles *h, uint64_t key)
{
	struct entry **pp = &h->b[(key ^ (key >> 40)) & (NBUCKETS - 1)];

	while (*pp && (*pp)->key != key)
		pp = &(*pp)->next;
	return pp;
}

struct handles *handles_new(void)
{
	struct handles *h = calloc(1, sizeof(*h));

	if (h)
		pthread_mutex_init(&h->lock, NULL);
	return h;
}

void handles_free(struct handles *h, void (*free_fn)(void *))
{
	if (!h)
		return;
	for (unsigned i = 0; i < NBUCKETS; i++) {
		while (h->b[i]) {
			struct entry *e = h->b[i];

			h->b[i] = e->next;
			if (free_fn)
				free_fn(e->p);
			free(e);
		}
	}
	pthread_mutex_destroy(&h->lock);
	free(h);
}

void handles_set_generation(struct handles *h, uint64_t generation)
{
	pthread_mutex_lock(&h->lock);
	h->generation = generation & 0xffffff;
	pthread_mutex_unlock(&h->lock);
}

int handles_put_at(struct handles *h, uint64_t key, void *p)
{
	struct entry *e = malloc(sizeof(*e));
	struct entry **pp;

	if (!e)
		return -1;
	e->key = key;
	e->p = p;
	pthread_mutex_lock(&h->lock);
	pp = slot(h, key);
	if (*pp) {
		/* Filed already (two rebuilds raced): keep the first. */
		pthread_mutex_unlock(&h->lock);
		free(e);
		return -1;
	}
	e->next = NULL;
	*pp = e;
	pthread_mutex_unlock(&h->lock);
	return 0;
}

uint64_t handles_add(struct handles *h, void *p)
{
	uint64_t key;

	pthread_mutex_lock(&h->lock);
	key = h->generation << 40 | (++h->counter & ((1ull << 40) - 1));
	pthread_mutex_unlock(&h->lock);
	return handles_put_at(h, key, p) == 0 ? key : 0;
}

void *handles_get(struct handles *h, uint64_t key)
{
	struct entry *e;
	void *p;

	pthread_mutex_lock(&h->lock);
	e = *slot(h, key);
	p = e ? e->p : NULL;
	pthread_mutex_unlock(&h->lock);
	return p;
}

void *handles_take(struct handles *h, uint64_t key)
{
	struct entry **pp, *e;
	void *p = NULL;

	pthread_mutex_lock(&h->lock);
	pp = slot(h, key);
	if ((e = *pp)) {
		*pp = e->next;
		p = e->p;
	}
	pthread_mutex_unlock(&h->lock);
	free(e);
	return p;
}
